//! Scan benchmark (`bench_scan`) and enrolment-stall measurement.
//!
//! Everything here is measured at run time; nothing is hard-coded.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Result;
use super::scan::{effective_threads, Matrix, QuantizedMatrix, SearchOptions, Snapshot, UserTable};
use super::simd::{AlignedF32, Kernel};
use super::store::{OpenMode, Store, StoreOptions};
use super::types::{Condition, ModelId, NewTemplate, User};
use super::Gallery;

/// Small deterministic PRNG (xorshift64*), so benches and tests need no extra crate.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator (seed 0 is remapped).
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Approximately Gaussian (sum of 4 uniforms), mean 0.
    pub fn gauss(&mut self) -> f32 {
        (self.next_f32() + self.next_f32() + self.next_f32() + self.next_f32()) * 0.866
    }
    /// Random unit vector of `dim` values.
    pub fn unit(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.gauss()).collect();
        normalize(v)
    }
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Snapshot of `n` random unit templates spread over `n / per_user` users.
pub fn random_snapshot(n: usize, dim: usize, per_user: usize, seed: u64) -> Snapshot {
    let per_user = per_user.max(1);
    let n_users = n.div_ceil(per_user).max(1);
    let users: Vec<User> = (0..n_users)
        .map(|i| User {
            name: format!("u{i}"),
            uid: None,
            created: 0,
            enabled: true,
        })
        .collect();
    let mut rng = XorShift::new(seed);
    let m = Matrix::generate(dim, n, |r, row| {
        for x in row.iter_mut() {
            *x = rng.gauss();
        }
        let norm = row
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        row.iter_mut().for_each(|x| *x /= norm);
        (r as u64, (r / per_user) as u32)
    });
    Snapshot {
        matrix: Arc::new(m),
        periocular: Arc::new(Matrix::empty(dim)),
        users: Arc::new(UserTable::from_users(&users)),
    }
}

/// Best-of-`passes` read bandwidth (GB/s, 1e9 bytes) of a fresh `bytes`-sized
/// buffer, read by `threads` threads with the given kernel's streaming sum.
pub fn measure_read_bandwidth(kernel: Kernel, bytes: usize, threads: usize, passes: usize) -> f64 {
    let n = bytes / 4;
    let mut buf = AlignedF32::zeroed(n);
    // Touch every page (and make the sum non-trivial).
    for (i, x) in buf.as_mut_slice().iter_mut().enumerate() {
        *x = (i & 7) as f32;
    }
    measure_sum_bandwidth(kernel, buf.as_slice(), threads, passes)
}

/// Best-of-`passes` bandwidth (GB/s) of a streaming SIMD sum over `data`,
/// split over `threads` threads.
pub fn measure_sum_bandwidth(kernel: Kernel, data: &[f32], threads: usize, passes: usize) -> f64 {
    let n = data.len().max(1);
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads);
    let mut best = 0.0f64;
    let mut sink = 0.0f32;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        let s: f32 = std::thread::scope(|sc| {
            let hs: Vec<_> = data
                .chunks(chunk)
                .map(|c| sc.spawn(move || kernel.sum(c)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        let dt = t.elapsed().as_secs_f64();
        sink += s;
        best = best.max((data.len() * 4) as f64 / dt / 1e9);
    }
    std::hint::black_box(sink);
    best
}

/// Benchmark configuration.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Template counts to test.
    pub sizes: Vec<usize>,
    /// Embedding dimension.
    pub dim: usize,
    /// Templates per user (aggregation load).
    pub per_user: usize,
    /// Thread count for the multi-threaded rows (0 = all CPUs).
    pub threads: usize,
    /// Buffer size for the bandwidth measurement.
    pub bandwidth_bytes: usize,
    /// Minimum measuring time per cell.
    pub min_time: Duration,
    /// Queries used for the int8 accuracy comparison.
    pub accuracy_queries: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            sizes: vec![1_000, 10_000, 100_000, 1_000_000],
            dim: 512,
            per_user: 5,
            threads: 0,
            bandwidth_bytes: 1 << 30,
            min_time: Duration::from_millis(500),
            accuracy_queries: 50,
        }
    }
}

/// (median, best) seconds per call of `f`, repeated until `min_time` elapsed
/// (at least 3 runs).
fn time_it(min_time: Duration, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up
    let mut v = Vec::new();
    let start = Instant::now();
    while v.len() < 3 || (start.elapsed() < min_time && v.len() < 1000) {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

/// Runs the scan benchmark and returns a markdown report (tables + notes).
pub fn bench_scan(cfg: &BenchConfig) -> String {
    let best = Kernel::best();
    let scalar = Kernel::scalar();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mt = if cfg.threads == 0 { cpus } else { cfg.threads };
    let mut out = String::new();

    let bw1 = measure_read_bandwidth(best, cfg.bandwidth_bytes, 1, 5);
    let bwn = if mt > 1 {
        measure_read_bandwidth(best, cfg.bandwidth_bytes, mt, 5)
    } else {
        bw1
    };
    let _ = writeln!(
        out,
        "Kernels available: {}; best: {}. Memory read bandwidth ({} MiB buffer, best of 5, {} sum): \
         {:.1} GB/s with 1 thread, {:.1} GB/s with {} threads.\n",
        Kernel::available()
            .iter()
            .map(|k| k.kind().name())
            .collect::<Vec<_>>()
            .join(", "),
        best.kind(),
        cfg.bandwidth_bytes >> 20,
        best.kind(),
        bw1,
        bwn,
        mt
    );
    let _ = writeln!(
        out,
        "| N | dim | variant | threads | ms/query median | ms/query best | Mtemplates/s (best) | GB/s (best) | % of mem read BW (same threads) |"
    );
    let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut acc_lines = Vec::new();

    for &n in &cfg.sizes {
        let snap = random_snapshot(n, cfg.dim, cfg.per_user, 42 + n as u64);
        let mut rng = XorShift::new(7);
        let query = rng.unit(cfg.dim);
        let f32_bytes = snap.matrix.scan_bytes() as f64;
        // Same-run reference next to each size: the SIMD sum over this very
        // matrix (same pages, same huge-page backing). The % column divides by
        // the larger of this and the 1 GiB-buffer figure (conservative).
        let mbw1 = measure_sum_bandwidth(best, snap.matrix.data(), 1, 5);
        let mbwn = if mt > 1 {
            measure_sum_bandwidth(best, snap.matrix.data(), mt, 5)
        } else {
            mbw1
        };
        let _ = writeln!(
            out,
            "| {n} | {} | (reference) SIMD sum over this matrix{} | 1 / {mt} | | | | {mbw1:.1} / {mbwn:.1} | |",
            cfg.dim,
            if snap.matrix.scan_bytes() < 64 << 20 { " (cache-resident)" } else { "" }
        );
        let (ref1, refn) = (bw1.max(mbw1), bwn.max(mbwn));
        let mut row = |variant: &str, threads: usize, (median, secs): (f64, f64), bytes: f64| {
            let bw = if threads > 1 { refn } else { ref1 };
            let gbs = bytes / secs / 1e9;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.0} % |",
                n,
                cfg.dim,
                variant,
                threads,
                median * 1e3,
                secs * 1e3,
                n as f64 / secs / 1e6,
                gbs,
                100.0 * gbs / bw
            );
        };
        let search = |kernel: Kernel, threads: usize| {
            let opts = SearchOptions {
                k: 5,
                threads,
                kernel: Some(kernel),
                ..Default::default()
            };
            let q = &query;
            let s = &snap;
            time_it(cfg.min_time, move || {
                std::hint::black_box(s.search(q, &opts).ok());
            })
        };
        // scalar reference: time-bounded, it is slow at 1M
        let t = search(scalar, 1);
        row("f32 search, scalar kernel", 1, t, f32_bytes);
        let t = search(best, 1);
        row(&format!("f32 search, {}", best.kind()), 1, t, f32_bytes);
        if mt > 1 {
            let threads = mt.min(n.max(1));
            let t = search(best, threads);
            row(
                &format!("f32 search, {}", best.kind()),
                threads,
                t,
                f32_bytes,
            );
            let auto = effective_threads(0, n);
            let t = search(best, 0);
            row(
                &format!("f32 search, {} (auto threads)", best.kind()),
                auto,
                t,
                f32_bytes,
            );
        }
        // int8 experiment: scores only (no aggregation) vs f32 scores only
        let qm = QuantizedMatrix::from_matrix(&snap.matrix);
        let mut scores = vec![0.0f32; n];
        let t = time_it(cfg.min_time, || {
            snap.matrix.scores_into(best, &query, &mut scores);
            std::hint::black_box(&scores);
        });
        row(
            &format!("f32 scores only, {}", best.kind()),
            1,
            t,
            f32_bytes,
        );
        let t = time_it(cfg.min_time, || {
            best.dot_rows_x4(
                &query,
                snap.matrix.data(),
                snap.matrix.stride(),
                &mut scores,
            );
            std::hint::black_box(&scores);
        });
        row(
            &format!("f32 scores only, {} 4 rows/pass", best.kind()),
            1,
            t,
            f32_bytes,
        );
        let t = time_it(cfg.min_time, || {
            qm.scores_into(best, &query, &mut scores);
            std::hint::black_box(&scores);
        });
        row(
            &format!("int8 scores only, {}", best.kind()),
            1,
            t,
            qm.scan_bytes() as f64,
        );

        // accuracy of int8 vs f32
        let mut max_err = 0.0f32;
        let mut top1_random = 0;
        let mut top1_genuine = 0;
        let mut exact = vec![0.0f32; n];
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        };
        let nq = cfg.accuracy_queries.max(1);
        for qi in 0..nq {
            // random query (near-ties: hardest case) and a "genuine" query:
            // a stored template plus noise (cosine ~0.7 to its source).
            let q = rng.unit(cfg.dim);
            snap.matrix.scores_into(best, &q, &mut exact);
            qm.scores_into(best, &q, &mut scores);
            for (a, b) in exact.iter().zip(&scores) {
                max_err = max_err.max((a - b).abs());
            }
            top1_random += usize::from(argmax(&exact) == argmax(&scores));
            let src = (qi * 7919) % n;
            let m = &snap.matrix;
            let base = &m.data()[src * m.stride()..src * m.stride() + cfg.dim];
            let g: Vec<f32> = base.iter().map(|x| x + 0.045 * rng.gauss()).collect();
            let g = normalize(g);
            snap.matrix.scores_into(best, &g, &mut exact);
            qm.scores_into(best, &g, &mut scores);
            for (a, b) in exact.iter().zip(&scores) {
                max_err = max_err.max((a - b).abs());
            }
            top1_genuine += usize::from(argmax(&exact) == argmax(&scores) && argmax(&exact) == src);
        }
        acc_lines.push(format!(
            "| {n} | {nq} | {max_err:.5} | {top1_random}/{nq} | {top1_genuine}/{nq} |"
        ));
    }
    let _ = writeln!(
        out,
        "\nint8 (per-row scale) vs f32 accuracy (max |score error| over all rows of all queries; \
         top-1 agreement for random unit queries and for genuine queries = stored template + noise):\n"
    );
    let _ = writeln!(out, "| N | queries | max abs score error | top-1 agree (random) | top-1 agree & correct (genuine) |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    for l in acc_lines {
        let _ = writeln!(out, "{l}");
    }
    out
}

/// Result of [`measure_enrol_stall`].
#[derive(Debug, Clone)]
pub struct StallReport {
    /// Templates in the gallery.
    pub n: usize,
    /// Search latency without concurrent writes: median and max (ms).
    pub idle_median_ms: f64,
    /// Max search latency without concurrent writes (ms).
    pub idle_max_ms: f64,
    /// Search latency while enrolling: median (ms).
    pub busy_median_ms: f64,
    /// Max search latency while enrolling (ms).
    pub busy_max_ms: f64,
    /// Number of single-template enrolments performed.
    pub enrolments: usize,
    /// Median wall time of one enrolment (commit + fsync + snapshot publish), ms.
    pub enrol_median_ms: f64,
    /// Searches measured while enrolling.
    pub busy_searches: usize,
    /// Median time of the durable store part alone (transaction + flush + fsync), ms.
    pub store_median_ms: f64,
    /// Median time of the snapshot part alone (copy-on-write matrix + swap), ms.
    pub snapshot_median_ms: f64,
}

fn median_max(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

/// Builds a real on-disk gallery of `n` templates at `dir` and measures how
/// much a concurrent single-threaded search loop is delayed by `enrolments`
/// single-template enrolments (each: sled transaction + fsync + copy-on-write
/// of the matrix + atomic snapshot swap).
pub fn measure_enrol_stall(
    dir: &std::path::Path,
    n: usize,
    dim: usize,
    enrolments: usize,
) -> Result<StallReport> {
    let mut opts = StoreOptions::new(dim, ModelId::new("bench", "0"));
    opts.mode = OpenMode::Create;
    let users = n.div_ceil(5).clamp(1, 1000);
    let mut rng = XorShift::new(1);
    {
        // Bulk load through the store only (no snapshot copy per batch).
        let store = Store::open(dir, &opts)?;
        for u in 0..users {
            store.add_user(&format!("u{u}"), None)?;
        }
        let mut i = 0;
        while i < n {
            let batch: Vec<NewTemplate> = (i..(i + 10_000).min(n))
                .map(|k| NewTemplate {
                    user: format!("u{}", k % users),
                    embedding: rng.unit(dim),
                    condition: Condition::Unmasked,
                    source: "bench".into(),
                    quality: 1.0,
                })
                .collect();
            i += batch.len();
            store.add_templates(batch)?;
        }
    }
    opts.mode = OpenMode::Open;
    opts.lock_wait = Duration::from_secs(30);
    let g = Gallery::open(dir, &opts)?;
    let query = rng.unit(dim);
    let opts1 = SearchOptions {
        k: 5,
        threads: 1,
        kernel: None,
        ..Default::default()
    };
    // idle baseline
    let mut idle = Vec::new();
    let t0 = Instant::now();
    while idle.len() < 10 || t0.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        std::hint::black_box(g.search(&query, &opts1)?);
        idle.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let stop = AtomicBool::new(false);
    let (busy, enrol) = std::thread::scope(|s| -> Result<(Vec<f64>, Vec<f64>)> {
        let h = s.spawn(|| {
            let mut v = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = g.search(&query, &opts1);
                v.push(t.elapsed().as_secs_f64() * 1e3);
                std::hint::black_box(r.ok());
            }
            v
        });
        let mut enrol = Vec::new();
        let mut err = None;
        for _ in 0..enrolments {
            let t = Instant::now();
            let r = g.add_template(NewTemplate {
                user: "u0".into(),
                embedding: rng.unit(dim),
                condition: Condition::Masked,
                source: "stall".into(),
                quality: 1.0,
            });
            enrol.push(t.elapsed().as_secs_f64() * 1e3);
            if let Err(e) = r {
                err = Some(e);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let busy = h.join().unwrap_or_default();
        match err {
            Some(e) => Err(e),
            None => Ok((busy, enrol)),
        }
    })?;
    // Split one enrolment into its two halves (store commit, snapshot rebuild).
    let mut store_t = Vec::new();
    let mut snap_t = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let added = g.store().add_template(NewTemplate {
            user: "u0".into(),
            embedding: rng.unit(dim),
            condition: Condition::Masked,
            source: "split".into(),
            quality: 1.0,
        })?;
        store_t.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let snap = g.snapshot();
        let m = snap.matrix.appended(std::iter::once((
            added.id,
            0u32,
            added.embedding.as_slice(),
        )));
        std::hint::black_box(Arc::new(m));
        snap_t.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (store_median_ms, _) = median_max(&mut store_t);
    let (snapshot_median_ms, _) = median_max(&mut snap_t);
    let mut busy = busy;
    let mut enrol = enrol;
    let (idle_median_ms, idle_max_ms) = median_max(&mut idle);
    let (busy_median_ms, busy_max_ms) = median_max(&mut busy);
    let (enrol_median_ms, _) = median_max(&mut enrol);
    Ok(StallReport {
        n: g.snapshot().len(),
        idle_median_ms,
        idle_max_ms,
        busy_median_ms,
        busy_max_ms,
        enrolments: enrol.len(),
        enrol_median_ms,
        busy_searches: busy.len(),
        store_median_ms,
        snapshot_median_ms,
    })
}
