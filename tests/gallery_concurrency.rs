//! Searching while enrolling: readers never see a half-applied batch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::sync::atomic::{AtomicBool, Ordering};

use facegate::gallery::bench::XorShift;
use facegate::gallery::{Condition, Gallery, ModelId, NewTemplate, SearchOptions, StoreOptions};

#[test]
fn readers_see_whole_batches_only() {
    const DIM: usize = 48;
    const BATCH: usize = 4;
    let tmp = tempfile::tempdir().unwrap();
    let g = Gallery::open(
        tmp.path().join("g"),
        &StoreOptions::new(DIM, ModelId::new("m", "1")),
    )
    .unwrap();
    g.add_user("w", None).unwrap();
    let mut rng = XorShift::new(5);
    let q = rng.unit(DIM);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = 0usize;
                    let mut last = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let snap = g.snapshot();
                        let m = &snap.matrix;
                        assert_eq!(m.rows() % BATCH, 0, "half-applied batch visible");
                        assert_eq!(m.ids().len(), m.rows());
                        assert!(m.rows() >= last, "snapshot went backwards");
                        last = m.rows();
                        let hits = snap
                            .search(
                                &q,
                                &SearchOptions {
                                    k: 1,
                                    threads: 1,
                                    kernel: None,
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        if m.rows() > 0 {
                            assert!(m.ids().contains(&hits[0].template_id));
                        }
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        for _ in 0..50 {
            let batch: Vec<NewTemplate> = (0..BATCH)
                .map(|_| NewTemplate {
                    user: "w".into(),
                    embedding: rng.unit(DIM),
                    condition: Condition::Unmasked,
                    source: String::new(),
                    quality: 1.0,
                })
                .collect();
            g.add_templates(batch).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    assert_eq!(g.snapshot().len(), 50 * BATCH);
}
