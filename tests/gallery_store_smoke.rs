//! Small end-to-end store test, also run under qemu-aarch64 (see docs/GALLERY.md, "sled under qemu-aarch64"):
//! create a NEW gallery, enrol, search, reopen, export, import.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use facegate::gallery::bench::XorShift;
use facegate::gallery::{
    Condition, Gallery, ImportMode, Kernel, ModelId, NewTemplate, OpenMode, SearchOptions,
    StoreOptions,
};

#[test]
fn create_enrol_search_reopen() {
    let t0 = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    let mut opts = StoreOptions::new(512, ModelId::new("m", "01"));
    opts.mode = OpenMode::Create;
    let g = Gallery::open(&dir, &opts).unwrap();
    eprintln!(
        "created new gallery in {:?} (kernel {})",
        t0.elapsed(),
        Kernel::best().kind()
    );
    let mut rng = XorShift::new(3);
    let mut embs = Vec::new();
    for u in 0..5 {
        let name = format!("user{u}");
        g.add_user(&name, Some(1000 + u)).unwrap();
        let batch: Vec<NewTemplate> = (0..4)
            .map(|_| {
                let e = rng.unit(512);
                embs.push((name.clone(), e.clone()));
                NewTemplate {
                    user: name.clone(),
                    embedding: e,
                    condition: Condition::SyntheticMasked,
                    source: "smoke".into(),
                    quality: 1.0,
                }
            })
            .collect();
        g.add_templates(batch).unwrap();
    }
    for (name, e) in &embs {
        let hits = g
            .search(
                e,
                &SearchOptions {
                    k: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(&*hits[0].user, name.as_str());
        assert!((hits[0].score - 1.0).abs() < 1e-4);
    }
    let export = tmp.path().join("backup.fgg");
    g.export(&export).unwrap();
    drop(g);
    opts.mode = OpenMode::Open;
    let g = Gallery::open(&dir, &opts).unwrap();
    assert_eq!(g.store().verify().unwrap().templates, 20);
    let g2 = Gallery::open(
        tmp.path().join("g2"),
        &StoreOptions::new(512, ModelId::new("m", "01")),
    )
    .unwrap();
    let r = g2.import(&export, ImportMode::IntoEmpty).unwrap();
    assert_eq!(r.templates_added, 20);
    assert_eq!(g2.templates().unwrap(), g.templates().unwrap());
    eprintln!("total {:?}", t0.elapsed());
}
