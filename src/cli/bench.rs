//! `facegate bench embed|scan|detect|mask` (`daemon` and `track` have their
//! own files; and the hidden embed worker): each prints a table.

use crate::bench;
use crate::bundle::{self, Bundle, Kind};
use crate::face::detect::{largest, Detector, DetectorOptions, TractDetector};
use crate::face::embed::{Embedder, EmbedderOptions, Precision, TractEmbedder};
use crate::face::imageio;
use crate::face::mask::{self, MaskStyle};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use super::bench_daemon::BenchDaemonArgs;

#[derive(Subcommand)]
pub(crate) enum BenchCmd {
    /// Milliseconds per face for every embedder bundle, tract next to onnxruntime.
    ///
    /// Each configuration runs in its own process so that thread pools and
    /// resident memory are measured cleanly. The onnxruntime column comes from
    /// models/bench_ort.py run with the pipeline's Python venv.
    Embed(BenchEmbedArgs),
    /// Gallery scan speed: time per query, templates/s and GB/s for N = 1k..1M
    /// templates, next to the memory read bandwidth measured in the same run
    /// and to the scalar kernel; optionally how long enrolment delays scans.
    Scan(BenchScanArgs),
    /// Milliseconds per frame for face detection at camera frame sizes.
    Detect(BenchDetectArgs),
    /// Synthetic masks painted per second, per style.
    Mask(BenchMaskArgs),
    /// The daemon end to end: start-to-ready time, resident memory, and
    /// frame → decision latency per stage for camera-sized frames.
    ///
    /// Starts the real facegated (next to this binary) on a replay camera
    /// showing a registry photo scaled into each frame size, enrols a person
    /// from two other photos over the socket, then times `verify` requests
    /// with the person masked and unmasked, and `identify`.
    Daemon(BenchDaemonArgs),
    /// Detection by tracking against searching every whole frame, on
    /// sequences built from registry photos (moving, approaching, leaving and
    /// entering, two faces, camera shake, far, masked): recall, landmark
    /// agreement, truth recall and ms per frame of both.
    Track(super::bench_track::BenchTrackArgs),
    /// (internal) measure one tract configuration and print a JSON line.
    #[command(hide = true)]
    EmbedWorker(WorkerArgs),
}

#[derive(Args)]
pub(crate) struct BenchEmbedArgs {
    /// Bundles to measure (default: every embedder bundle).
    #[arg(long, value_delimiter = ',')]
    bundles: Vec<String>,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    /// Also measure fp32 bundles with f16 arithmetic in tract.
    #[arg(long)]
    f16: bool,
    /// Also measure tract without facegate's graph rewrites (face::prelu).
    #[arg(long)]
    plain_tract: bool,
    /// Timed faces per configuration (at least one run of each batch).
    #[arg(long, default_value_t = 24)]
    faces: usize,
    /// Python with onnxruntime for the peer column ("off" to skip). Default:
    /// $FACEGATE_PYTHON, else the venv recorded by models/build.
    #[arg(long)]
    python: Option<String>,
    /// Also print where tract's time goes, per operator (batch 1, 1 thread).
    #[arg(long)]
    profile: bool,
}

#[derive(Args)]
pub(crate) struct BenchScanArgs {
    /// Gallery sizes (templates).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,10000,100000,1000000"
    )]
    sizes: Vec<usize>,
    /// Embedding dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Threads for the multi-threaded rows (0 = all CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Buffer for the memory-bandwidth reference, MiB.
    #[arg(long, default_value_t = 1024)]
    bw_mib: usize,
    /// Minimum measuring time per cell, ms.
    #[arg(long, default_value_t = 500)]
    min_ms: u64,
    /// Queries for the int8-vs-f32 accuracy comparison.
    #[arg(long, default_value_t = 20)]
    queries: usize,
    /// Also measure how much enrolment delays searches, on on-disk galleries of these sizes.
    #[arg(long, value_delimiter = ',')]
    stall: Vec<usize>,
    /// Skip the scan table (with --stall).
    #[arg(long)]
    no_scan: bool,
}

#[derive(Args)]
pub(crate) struct BenchDetectArgs {
    /// Frame sizes WxH.
    #[arg(long, value_delimiter = ',', default_value = "640x480,320x240")]
    sizes: Vec<String>,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed frames per configuration.
    #[arg(long, default_value_t = 30)]
    frames: usize,
    /// Photo to use (default: the registry's obama.jpg, scaled into the frame).
    #[arg(long)]
    photo: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct BenchMaskArgs {
    /// Masks per style.
    #[arg(long, default_value_t = 40)]
    masks: usize,
    /// Also time a MaskTheFace template folder (template renderer).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    bundle: String,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    faces: usize,
    #[arg(long)]
    profile: bool,
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Without facegate's graph rewrites (tract's own operators only).
    #[arg(long)]
    plain: bool,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Measurement {
    bundle: String,
    engine: String,
    threads: usize,
    batch: usize,
    ms_per_face: f64,
    /// CPU time per face, all threads (less sensitive to a busy machine).
    cpu_ms_per_face: f64,
    load_ms: f64,
    rss_mib: f64,
    #[serde(default)]
    profile: Vec<(String, f64)>,
}

/// Real aligned crops for benchmarking: the pipeline's reference crops.
pub(crate) fn bench_crops(models: &Path, size: u32, n: usize) -> Result<Vec<image::RgbImage>> {
    let dir = models.join("reference/crops");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    let mut crops = Vec::new();
    for f in &files {
        let img = imageio::load_rgb(f)?;
        if img.width() == size && img.height() == size {
            crops.push(img);
        }
    }
    if crops.is_empty() {
        bail!("no {size}x{size} crops in {}", dir.display());
    }
    Ok((0..n).map(|i| crops[i % crops.len()].clone()).collect())
}

pub(crate) fn bench_worker(models: &Path, a: WorkerArgs) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let e = TractEmbedder::from_bundle(
        &Bundle::open_named(models, &a.bundle)?,
        &EmbedderOptions {
            max_batch: a.batch.max(1),
            threads: a.threads.max(1),
            precision: a.precision,
            rewrites: !a.plain,
        },
    )?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let rss_mib = bench::rss_kib().unwrap_or(0) as f64 / 1024.0;
    let crops = bench_crops(models, e.crop_size(), a.batch)?;
    let refs: Vec<&image::RgbImage> = crops.iter().collect();
    let runs = a.faces.div_ceil(a.batch).max(1);
    e.embed_batch(&refs)?;
    let cpu0 = bench::process_cpu_time();
    let times = bench::time_runs(0, runs, || e.embed_batch(&refs).map(|_| ()))?;
    let cpu_ms_per_face =
        (bench::process_cpu_time() - cpu0).as_secs_f64() * 1e3 / (runs * a.batch) as f64;
    let ms_per_face = bench::median(&times).as_secs_f64() * 1e3 / a.batch as f64;
    let mut profile = Vec::new();
    if a.profile {
        let mut acc: std::collections::HashMap<String, f64> = Default::default();
        for _ in 0..3 {
            for (op, d) in e.profile_ops(&refs)? {
                *acc.entry(op).or_default() += d.as_secs_f64() * 1e3 / 3.0;
            }
        }
        profile = acc.into_iter().collect();
        profile.sort_by(|x, y| y.1.total_cmp(&x.1));
    }
    let m = Measurement {
        bundle: match (a.precision, a.plain) {
            (Precision::F32, false) => a.bundle,
            (Precision::F32, true) => format!("{} (tract's ops only)", a.bundle),
            (Precision::F16, _) => format!("{} (f16)", a.bundle),
        },
        engine: "tract".into(),
        threads: a.threads,
        batch: a.batch,
        ms_per_face,
        cpu_ms_per_face,
        load_ms,
        rss_mib,
        profile,
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(ExitCode::SUCCESS)
}

/// The Python that runs the onnxruntime side, if any.
pub(crate) fn find_python(models: &Path, flag: Option<&str>) -> Option<String> {
    if let Some(p) = flag {
        return (p != "off").then(|| p.to_string());
    }
    if let Ok(p) = std::env::var("FACEGATE_PYTHON") {
        return Some(p);
    }
    let recorded = std::fs::read_to_string(models.join("PYTHON")).ok()?;
    let p = recorded.trim().to_string();
    Path::new(&p).exists().then_some(p)
}

pub(crate) fn run_json(cmd: &mut Command) -> Result<Measurement> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))
}

pub(crate) fn bench_embed(models: &Path, a: BenchEmbedArgs) -> Result<ExitCode> {
    let bundles = if a.bundles.is_empty() {
        bundle::list(models)?
            .into_iter()
            .filter(|n| Bundle::open_kind(models.join("bundles").join(n), Kind::Embedder).is_ok())
            .collect()
    } else {
        a.bundles.clone()
    };
    let exe = std::env::current_exe()?;
    let python = find_python(models, a.python.as_deref());
    let script = find_bench_ort_script();
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for b in &bundles {
        for &t in &a.threads {
            for &n in &a.batch {
                let is_fp32 = Bundle::open_named(models, b)
                    .is_ok_and(|x| x.manifest.model.precision == "fp32");
                let mut variants: Vec<(&str, bool)> = vec![("f32", false)];
                if a.plain_tract {
                    variants.push(("f32", true));
                }
                if a.f16 && is_fp32 {
                    variants.push(("f16", false));
                }
                for (p, plain) in variants {
                    let mut cmd = Command::new(&exe);
                    cmd.arg("--models")
                        .arg(models)
                        .args(["bench", "embed-worker", "--bundle", b, "--precision", p])
                        .args(["--threads", &t.to_string(), "--batch", &n.to_string()])
                        .args(["--faces", &a.faces.to_string()]);
                    if plain {
                        cmd.arg("--plain");
                    }
                    let m = run_json(&mut cmd)?;
                    eprintln!(
                        "  {} tract t={t} b={n}: {:.2} ms/face",
                        m.bundle, m.ms_per_face
                    );
                    all.push(m);
                }
                if let (Some(py), Some(script)) = (&python, &script) {
                    let dir = models.join("bundles").join(b);
                    match run_json(
                        Command::new(py)
                            .arg(script)
                            .arg("--bundle")
                            .arg(&dir)
                            .arg("--crops")
                            .arg(models.join("reference/crops"))
                            .args(["--threads", &t.to_string(), "--batch", &n.to_string()])
                            .args(["--faces", &a.faces.to_string()]),
                    ) {
                        Ok(m) => {
                            eprintln!(
                                "  {b} onnxruntime t={t} b={n}: {:.2} ms/face",
                                m.ms_per_face
                            );
                            all.push(m)
                        }
                        Err(e) => eprintln!("facegate: onnxruntime side skipped for {b}: {e:#}"),
                    }
                }
            }
        }
    }
    let best_ort = all
        .iter()
        .filter(|m| m.engine == "onnxruntime")
        .map(|m| m.ms_per_face)
        .fold(f64::INFINITY, f64::min);
    for m in &all {
        rows.push(vec![
            m.bundle.clone(),
            m.engine.clone(),
            m.threads.to_string(),
            m.batch.to_string(),
            format!("{:.2}", m.ms_per_face),
            format!("{:.2}", m.cpu_ms_per_face),
            if best_ort.is_finite() {
                format!("{:.2}x", m.ms_per_face / best_ort)
            } else {
                "-".into()
            },
            format!("{:.0}", m.load_ms),
            format!("{:.0}", m.rss_mib),
        ]);
    }
    println!(
        "embedding benchmark: wall ms per face (median of runs) and CPU ms per face (all threads), {} faces per configuration",
        a.faces
    );
    print!(
        "{}",
        bench::table(
            &[
                "bundle",
                "engine",
                "threads",
                "batch",
                "ms/face",
                "cpu ms/face",
                "vs best ort",
                "load ms",
                "RSS MiB"
            ],
            &rows
        )
    );
    if python.is_none() || script.is_none() {
        println!("(onnxruntime column skipped: --python off, or no Python with onnxruntime found: run models/build or pass --python)");
    }
    if a.profile {
        for b in &bundles {
            let m = run_json(
                Command::new(&exe)
                    .arg("--models")
                    .arg(models)
                    .args([
                        "bench",
                        "embed-worker",
                        "--bundle",
                        b,
                        "--threads",
                        "1",
                        "--batch",
                        "1",
                    ])
                    .args(["--faces", "1", "--profile"]),
            )?;
            let total: f64 = m.profile.iter().map(|p| p.1).sum();
            println!("\nwhere tract's time goes: {b}, batch 1, 1 thread ({total:.1} ms per run, op by op)");
            let rows: Vec<Vec<String>> = m
                .profile
                .iter()
                .take(12)
                .map(|(op, ms)| {
                    vec![
                        op.clone(),
                        format!("{ms:.2}"),
                        format!("{:.1}%", 100.0 * ms / total),
                    ]
                })
                .collect();
            print!("{}", bench::table(&["operator", "ms", "share"], &rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn bench_scan(a: BenchScanArgs) -> Result<ExitCode> {
    use crate::gallery::bench::{bench_scan, measure_enrol_stall, BenchConfig};
    let cfg = BenchConfig {
        sizes: a.sizes,
        dim: a.dim,
        threads: a.threads,
        bandwidth_bytes: a.bw_mib << 20,
        min_time: std::time::Duration::from_millis(a.min_ms),
        accuracy_queries: a.queries,
        ..BenchConfig::default()
    };
    if !a.no_scan {
        println!("{}", bench_scan(&cfg));
    }
    if !a.stall.is_empty() {
        let mut rows = Vec::new();
        for n in a.stall {
            let tmp =
                std::env::temp_dir().join(format!("facegate-stall-{}-{n}", std::process::id()));
            let r = measure_enrol_stall(&tmp, n, cfg.dim, 20);
            let _ = std::fs::remove_dir_all(&tmp);
            let r = r?;
            rows.push(vec![
                r.n.to_string(),
                format!("{:.2} / {:.2}", r.idle_median_ms, r.idle_max_ms),
                format!("{:.2} / {:.2}", r.busy_median_ms, r.busy_max_ms),
                r.busy_searches.to_string(),
                r.enrolments.to_string(),
                format!("{:.1}", r.enrol_median_ms),
                format!("{:.1}", r.store_median_ms),
                format!("{:.1}", r.snapshot_median_ms),
            ]);
        }
        print!(
            "{}",
            bench::table(
                &[
                    "N",
                    "idle search median / max ms",
                    "search median / max ms while enrolling",
                    "searches during enrolment",
                    "enrolments",
                    "enrol median ms",
                    "of which store ms",
                    "of which matrix copy ms",
                ],
                &rows
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// models/bench_ort.py, next to the source tree (or $FACEGATE_BENCH_ORT).
pub(crate) fn find_bench_ort_script() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FACEGATE_BENCH_ORT") {
        return Some(PathBuf::from(p));
    }
    let candidates = [
        PathBuf::from("models/bench_ort.py"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/bench_ort.py"),
    ];
    candidates.into_iter().find(|p| p.exists())
}

/// A frame of `w` x `h` holding `photo` scaled to fit (grey letterbox).
pub(crate) fn frame_from(photo: &image::RgbImage, w: u32, h: u32) -> image::RgbImage {
    let s = (w as f32 / photo.width() as f32).min(h as f32 / photo.height() as f32);
    let (pw, ph) = (
        ((photo.width() as f32 * s) as u32).max(1),
        ((photo.height() as f32 * s) as u32).max(1),
    );
    let small = image::imageops::resize(photo, pw, ph, image::imageops::FilterType::Triangle);
    let mut frame = image::RgbImage::from_pixel(w, h, image::Rgb([96, 96, 96]));
    image::imageops::replace(
        &mut frame,
        &small,
        ((w - pw) / 2) as i64,
        ((h - ph) / 2) as i64,
    );
    frame
}

pub(crate) fn bench_detect(models: &Path, a: BenchDetectArgs) -> Result<ExitCode> {
    let photo_path = a
        .photo
        .clone()
        .unwrap_or_else(|| models.join("photos/face_recognition/obama.jpg"));
    let photo = imageio::load_rgb(&photo_path)?;
    let b = Bundle::open_named(models, bundle::DEFAULT_DETECTOR)?;
    let mut rows = Vec::new();
    for size in &a.sizes {
        let (w, h) = parse_size(size)?;
        let frame = frame_from(&photo, w, h);
        for &t in &a.threads {
            let opts = DetectorOptions {
                threads: t.max(1),
                max_side: None,
                pad: 0.0,
                pad_max_side: None,
                score_threshold: None,
            };
            let det = TractDetector::from_bundle(&b, &opts)?;
            let t0 = std::time::Instant::now();
            let faces = det.detect(&frame)?;
            let first_ms = t0.elapsed().as_secs_f64() * 1e3;
            let times = bench::time_runs(2, a.frames, || det.detect(&frame).map(|_| ()))?;
            let med = bench::median(&times).as_secs_f64() * 1e3;
            let best = times.iter().min().map_or(0.0, |d| d.as_secs_f64() * 1e3);
            eprintln!("  {w}x{h} t={t}: {med:.2} ms/frame");
            rows.push(vec![
                format!("{w}x{h}"),
                t.to_string(),
                format!("{med:.2}"),
                format!("{best:.2}"),
                format!("{:.0}", 1e3 / med),
                format!("{first_ms:.0}"),
                faces.len().to_string(),
            ]);
        }
    }
    println!(
        "detection benchmark ({}): ms per frame, {} frames per configuration, network + decoding + NMS",
        b.name(),
        a.frames
    );
    print!(
        "{}",
        bench::table(
            &[
                "frame",
                "threads",
                "median ms",
                "best ms",
                "fps",
                "first frame ms (plan)",
                "faces"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// A frame size given as `WxH`.
pub(crate) fn parse_size(size: &str) -> Result<(u32, u32)> {
    size.split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .with_context(|| format!("size {size:?} is not WxH"))
}

pub(crate) fn bench_mask(models: &Path, a: BenchMaskArgs) -> Result<ExitCode> {
    let photo = imageio::load_rgb(&models.join("photos/face_recognition/obama.jpg"))?;
    let frame = frame_from(&photo, 640, 480);
    let det = TractDetector::from_bundle(
        &Bundle::open_named(models, bundle::DEFAULT_DETECTOR)?,
        &DetectorOptions::default(),
    )?;
    let faces = det.detect(&frame)?;
    let face = largest(&faces)
        .context("no face in the benchmark frame")?
        .clone();
    let mut rows = Vec::new();
    let mut styles: Vec<(String, MaskStyle)> = mask::Procedural::ALL
        .iter()
        .map(|p| (p.name().to_string(), MaskStyle::Procedural(*p)))
        .collect();
    let set = a
        .templates
        .as_ref()
        .map(|d| mask::template::TemplateSet::load(d))
        .transpose()?;
    if let Some(set) = &set {
        for n in ["surgical", "KN95", "cloth"] {
            if set.templates.contains_key(n) {
                styles.push((
                    format!("template:{n}"),
                    MaskStyle::Template {
                        dir: PathBuf::new(),
                        name: n.into(),
                    },
                ));
            }
        }
    }
    for (name, style) in &styles {
        let mut seed = 0u64;
        let times = bench::time_runs(2, a.masks, || -> Result<()> {
            let mut img = frame.clone();
            seed += 1;
            match (style, &set) {
                (MaskStyle::Template { name, .. }, Some(set)) => {
                    set.paint(&mut img, &face, name)?
                }
                _ => mask::paint(&mut img, &face, style, seed)?,
            }
            Ok(())
        })?;
        let med = bench::median(&times).as_secs_f64() * 1e3;
        rows.push(vec![
            name.clone(),
            format!("{med:.2}"),
            format!("{:.0}", 1e3 / med),
        ]);
    }
    println!(
        "mask rendering benchmark: one {:.0} px wide face in a 640x480 frame, {} masks per style, 1 thread (includes copying the frame)",
        face.width(),
        a.masks
    );
    print!(
        "{}",
        bench::table(&["style", "ms per mask", "masks/s"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}
