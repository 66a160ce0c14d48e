//! The daemon's malloc arena cap holds (issue 17 §4): once
//! `facegate::malloc::limit_arenas` is applied, sixteen threads allocating
//! at the same time make no arenas beyond the cap (without it, glibc gives
//! each new thread an arena of its own up to 8 × cores). Its own test binary, so
//! no other test's threads share the process.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn sixteen_busy_threads_stay_within_the_cap() {
    use facegate::malloc;
    use std::sync::{Arc, Barrier};
    let cap = malloc::DEFAULT_ARENAS;
    // The main arena and, at most, the test thread's own.
    let before = malloc::arenas().unwrap();
    let allowed = before.max(cap as usize);
    assert!(malloc::limit_arenas(cap));
    let n = 16;
    let go = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                // Frame-sized and small blocks, held across the barrier so
                // the threads contend for malloc at the same time.
                let mut keep = Vec::new();
                for k in 0..200 {
                    keep.push(vec![(i + k) as u8; 1 + (k * 997) % 65_536]);
                }
                go.wait();
                keep.iter().map(|v| v.len()).sum::<usize>()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
    let after = malloc::arenas().unwrap();
    assert!(
        after <= allowed,
        "{after} arenas after 16 busy threads (cap {cap}, {before} before)"
    );
    assert!(malloc::trim() || malloc::arenas().is_some());
}
