//! `facegate`: the command-line tool (embeddings, model bundles, benchmarks).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use facegate::bench;
use facegate::bundle::AlignSection;
use facegate::bundle::{self, Bundle, Kind};
use facegate::detect::{largest, Detector, DetectorOptions, Face, TractDetector};
use facegate::embed::{Embedder, EmbedderOptions, Precision, TractEmbedder};
use facegate::imageio;
use facegate::mask::{self, MaskStyle};
use facegate::pipeline::largest_face_crop;

/// Face (and masked-face) recognition for door and login unlock, offline.
///
/// Model bundles come from `models/build` (see README.md); they are looked up
/// in --models, else $FACEGATE_MODELS, else ./models/out, else
/// /usr/lib/facegate/models.
#[derive(Parser)]
#[command(name = "facegate", version, propagate_version = true)]
struct Cli {
    /// Folder holding bundles/<name>/manifest.toml (built by models/build).
    #[arg(long, global = true, value_name = "DIR")]
    models: Option<PathBuf>,
    /// More logging (-v info, -vv debug). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Let tract use Intel AMX int8 kernels (x86_64 CPUs with AMX). Off by
    /// default: the daemon crashed inside them (docs/AMX.md).
    #[arg(long, global = true)]
    amx: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print one JSON line per image: {"path", "embedding": [floats]} or {"path", "error"}.
    ///
    /// Exit status is 0 when every image was embedded, 1 when any failed (the
    /// others are still printed).
    Embed(EmbedArgs),
    /// Print the cosine similarity of every pair of aligned face crops as a table.
    Compare(CompareArgs),
    /// List the model bundles and verify each one (manifest, size, sha256).
    Models,
    /// Show which instruction sets and matrix kernels tract uses on this
    /// machine (nothing runs), and the signal-stack sizes (docs/AMX.md).
    Cpu,
    /// Find faces: one JSON line per image, {"path", "faces": [{"box",
    /// "score", "landmarks"}]} or {"path", "error"}.
    ///
    /// Boxes are [x0, y0, x1, y1]; landmarks are left eye, right eye, nose,
    /// left and right mouth corners, in image pixels. Exit status 1 when any
    /// image failed.
    Detect(DetectArgs),
    /// Detect the largest face and write its aligned crop (the embedder's input).
    Align(AlignArgs),
    /// Paint a synthetic mask on the largest face of a photo.
    Mask(MaskArgs),
    /// Benchmarks that print a table.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Measure recognition accuracy with the product's pipeline (see docs/ACCURACY.md).
    #[command(subcommand)]
    Eval(EvalCmd),
    /// Talk to facegated (enroll, list, remove, verify, identify, status, watch, export, import).
    #[command(flatten)]
    Daemon(facegate::client::DaemonCmd),
}

#[derive(Subcommand)]
enum EvalCmd {
    /// LFW: 10-fold accuracy, TAR at FAR, EER, open-set, the seed report's
    /// protocol, enrolment strategies, calibrated thresholds; writes
    /// <out>/report.md and PNG plots.
    Lfw(EvalLfwArgs),
}

#[derive(Args)]
struct EvalLfwArgs {
    /// LFW folder holding deepfunneled/ and pairs.txt.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Report folder (report.md, PNGs, thresholds.toml).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Embedder bundle to evaluate.
    #[arg(long, default_value = bundle::DEFAULT_EMBEDDER)]
    bundle: String,
    /// Detector bundle.
    #[arg(long, default_value = bundle::DEFAULT_DETECTOR)]
    detector: String,
    /// Mask renderers, comma-separated: procedural, templates:<dir>.
    #[arg(long, default_value = "procedural", value_delimiter = ',')]
    masks: Vec<String>,
    /// Also evaluate this bundle (e.g. facenet-fp32) on the pairs, unmasked
    /// and with the first mask renderer (`NAME:unmasked`: unmasked only).
    #[arg(long, value_name = "BUNDLE")]
    compare: Option<String>,
    /// Target false-accept rate per attempt for the calibrated thresholds.
    #[arg(long, default_value_t = 1e-4)]
    target_far: f64,
    /// Embedding cache (default ~/.cache/facegate/eval).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Detect on a copy downscaled to this longer side (LFW images are
    /// 250 px: 125 detects at half scale, like detect_max_side = 320 on a
    /// 640x480 camera). Default: the daemon's default.
    #[arg(long, value_name = "PX")]
    detect_max_side: Option<u32>,
}

#[derive(Args, Clone)]
struct DetectOpts {
    /// Detector bundle to use.
    #[arg(long, default_value = bundle::DEFAULT_DETECTOR)]
    detector: String,
    /// Downscale frames whose longer side exceeds this before detecting (0: never).
    #[arg(long, default_value_t = 1280)]
    max_side: u32,
    /// Replicated border, as a fraction of the longer side, added for a
    /// second try when no face is found (0: no retry).
    #[arg(long, default_value_t = 0.4)]
    pad: f32,
    /// Threads for the detector's matrix products.
    #[arg(long = "detect-threads", default_value_t = 1)]
    detect_threads: usize,
}

#[derive(Args)]
struct DetectArgs {
    #[command(flatten)]
    det: DetectOpts,
    /// Also write each image with its faces drawn to DIR/<name>.png.
    #[arg(long, value_name = "DIR")]
    draw: Option<PathBuf>,
    /// Image files (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

#[derive(Args)]
struct AlignArgs {
    #[command(flatten)]
    det: DetectOpts,
    /// Embedder bundle whose [align] template is used.
    #[arg(long, default_value = bundle::DEFAULT_EMBEDDER)]
    bundle: String,
    /// Where to write the aligned crop (PNG).
    #[arg(long, value_name = "OUT.png")]
    out: PathBuf,
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

#[derive(Args)]
struct MaskArgs {
    #[command(flatten)]
    det: DetectOpts,
    /// surgical, surgical-white, surgical-green, black-cloth, patterned,
    /// kn95, n95, or template:<dir>:<name> (MaskTheFace templates, dir holds masks.cfg).
    #[arg(long, default_value = "surgical")]
    style: String,
    /// Seed for the small random variations (colour, fit, pattern).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the masked photo (PNG).
    #[arg(long, value_name = "OUT.png")]
    out: PathBuf,
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

#[derive(Args)]
struct EmbedArgs {
    /// The images are already aligned face crops of the model's size
    /// (160x160 for FaceNet). Without it every image goes through the full
    /// pipeline: detect, keep the largest face, align, embed.
    #[arg(long)]
    aligned: bool,
    #[command(flatten)]
    det: DetectOpts,
    /// Embedder bundle to use.
    #[arg(long, default_value = bundle::DEFAULT_EMBEDDER)]
    bundle: String,
    /// Threads for tract's matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Crops per inference run.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Compute precision for float models: f32, or f16 (fast on aarch64 cores with FP16).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Image files (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    /// The images are aligned face crops (required until detection lands).
    #[arg(long, required = true)]
    aligned: bool,
    /// Embedder bundle to use.
    #[arg(long, default_value = bundle::DEFAULT_EMBEDDER)]
    bundle: String,
    /// Aligned face crops (at least two).
    #[arg(required = true, num_args = 2.., value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum BenchCmd {
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
    /// (internal) measure one tract configuration and print a JSON line.
    #[command(hide = true)]
    EmbedWorker(WorkerArgs),
}

#[derive(Args)]
struct BenchEmbedArgs {
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
struct BenchScanArgs {
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
struct BenchDetectArgs {
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
struct BenchDaemonArgs {
    /// Camera frame sizes WxH.
    #[arg(long, value_delimiter = ',', default_value = "640x480,320x240")]
    sizes: Vec<String>,
    /// Timed decisions per row.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Frames fused per decision (the daemon's [decision] min_frames).
    #[arg(long, default_value_t = 2)]
    frames: u32,
    /// Replay camera rate (frames per second).
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// The facegated binary (default: next to this one).
    #[arg(long)]
    facegated: Option<PathBuf>,
    /// The daemon's [models] threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The daemon's [models] detect_max_side (0 = never downscale).
    #[arg(long, default_value_t = 1280)]
    detect_max_side: u32,
}

#[derive(Args)]
struct BenchMaskArgs {
    /// Masks per style.
    #[arg(long, default_value_t = 40)]
    masks: usize,
    /// Also time a MaskTheFace template folder (template renderer).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

#[derive(Args)]
struct WorkerArgs {
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
}

#[derive(Serialize, Deserialize, Debug)]
struct Measurement {
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

#[derive(Serialize)]
struct EmbedLine<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn cpu_report() -> Result<ExitCode> {
    let r = facegate::cpu::kernel_report();
    let applied = facegate::cpu::ensure();
    println!("isa            {}", r.isa);
    println!("int8 kernel    {}", r.int8_kernel);
    println!("f32 kernel     {}", r.f32_kernel);
    println!("amx            {}", if r.amx_in_use { "on" } else { "off" });
    println!(
        "TRACT_CPU_ISA  {}",
        applied.isa_override.as_deref().unwrap_or("(not edited)")
    );
    println!(
        "sigaltstack    kernel minimum {} B (AT_MINSIGSTKSZ), facegate threads {} B",
        facegate::crash::kernel_min_sigstack(),
        facegate::crash::altstack_size()
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    if let Some(code) = facegate::docs::generate_if_asked::<Cli>() {
        return code;
    }
    if let Err(e) = facegate::crash::install_fatal_handlers("facegate") {
        eprintln!("facegate: cannot install the fatal-signal reporter: {e}");
    }
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let models = cli
        .models
        .clone()
        .unwrap_or_else(bundle::default_models_dir);
    // Before any model is loaded: tract picks its kernels once per process.
    if let Err(e) = facegate::cpu::configure(facegate::cpu::CpuPolicy { amx: cli.amx }) {
        eprintln!("facegate: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Cmd::Cpu => cpu_report(),
        Cmd::Embed(a) => embed(&models, a),
        Cmd::Detect(a) => detect(&models, a),
        Cmd::Align(a) => align_cmd(&models, a),
        Cmd::Mask(a) => mask_cmd(&models, a),
        Cmd::Compare(a) => compare(&models, a),
        Cmd::Models => list_models(&models),
        Cmd::Bench(BenchCmd::Embed(a)) => bench_embed(&models, a),
        Cmd::Bench(BenchCmd::EmbedWorker(a)) => bench_worker(&models, a),
        Cmd::Bench(BenchCmd::Scan(a)) => bench_scan(a),
        Cmd::Bench(BenchCmd::Detect(a)) => bench_detect(&models, a),
        Cmd::Bench(BenchCmd::Mask(a)) => bench_mask(&models, a),
        Cmd::Bench(BenchCmd::Daemon(a)) => bench_daemon(&models, a),
        Cmd::Eval(EvalCmd::Lfw(a)) => eval_lfw(&models, a),
        Cmd::Daemon(c) => facegate::client::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("facegate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_embedder(
    models: &Path,
    name: &str,
    threads: usize,
    batch: usize,
    precision: Precision,
) -> Result<TractEmbedder> {
    let b = Bundle::open_named(models, name)?;
    let opts = EmbedderOptions {
        max_batch: batch.max(1),
        threads: threads.max(1),
        precision,
    };
    Ok(TractEmbedder::from_bundle(&b, &opts)?)
}

fn load_detector(models: &Path, o: &DetectOpts) -> Result<TractDetector> {
    let b = Bundle::open_named(models, &o.detector)?;
    let opts = DetectorOptions {
        threads: o.detect_threads.max(1),
        max_side: (o.max_side > 0).then_some(o.max_side),
        pad: o.pad.max(0.0),
        score_threshold: None,
    };
    Ok(TractDetector::from_bundle(&b, &opts)?)
}

fn align_section(models: &Path, bundle_name: &str) -> Result<AlignSection> {
    let b = Bundle::open_named(models, bundle_name)?;
    b.manifest
        .align
        .clone()
        .with_context(|| format!("bundle {bundle_name} has no [align] section"))
}

fn embed(models: &Path, a: EmbedArgs) -> Result<ExitCode> {
    let embedder = load_embedder(models, &a.bundle, a.threads, a.batch, a.precision)?;
    let size = embedder.crop_size();
    let front = if a.aligned {
        None
    } else {
        Some((
            load_detector(models, &a.det)?,
            align_section(models, &a.bundle)?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    let print = |out: &mut std::io::StdoutLock, line: &EmbedLine| -> Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    for chunk in a.images.chunks(a.batch.max(1)) {
        // Decode the chunk; failures are reported in order, successes batched.
        let mut loaded: Vec<(usize, image::RgbImage)> = Vec::new();
        let mut errors: Vec<Option<String>> = vec![None; chunk.len()];
        for (i, p) in chunk.iter().enumerate() {
            let loaded_img = imageio::load_rgb(p).map_err(|e| e.to_string());
            let loaded_img = match (&front, loaded_img) {
                (Some((det, cfg)), Ok(img)) => match largest_face_crop(det, &img, cfg) {
                    Ok(Some((_, crop))) => Ok(crop),
                    Ok(None) => Err("no face".to_string()),
                    Err(e) => Err(e.to_string()),
                },
                (_, r) => r,
            };
            match loaded_img {
                Ok(img) if img.width() == size && img.height() == size => loaded.push((i, img)),
                Ok(img) => {
                    errors[i] = Some(format!(
                        "image is {}x{}; --aligned needs {size}x{size} face crops",
                        img.width(),
                        img.height()
                    ))
                }
                Err(e) => errors[i] = Some(e),
            }
        }
        let refs: Vec<&image::RgbImage> = loaded.iter().map(|(_, img)| img).collect();
        let mut embeddings: Vec<Option<Vec<f32>>> = vec![None; chunk.len()];
        match embedder.embed_batch(&refs) {
            Ok(es) => {
                for ((i, _), e) in loaded.iter().zip(es) {
                    embeddings[*i] = Some(e.into_vec());
                }
            }
            Err(e) => {
                for (i, _) in &loaded {
                    errors[*i] = Some(e.to_string());
                }
            }
        }
        for (i, p) in chunk.iter().enumerate() {
            let path = p.to_string_lossy();
            let line = EmbedLine {
                path: &path,
                embedding: embeddings[i].as_deref(),
                error: errors[i].take(),
            };
            if line.error.is_some() {
                failed += 1;
            }
            print(&mut out, &line)?;
        }
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn compare(models: &Path, a: CompareArgs) -> Result<ExitCode> {
    let embedder = load_embedder(models, &a.bundle, 1, 8, Precision::F32)?;
    let mut crops = Vec::new();
    for p in &a.images {
        let img = imageio::load_rgb(p)?;
        crops.push(img);
    }
    let refs: Vec<&image::RgbImage> = crops.iter().collect();
    let t = std::time::Instant::now();
    let es = embedder.embed_batch(&refs)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let label = |p: &PathBuf| {
        p.file_stem().map_or_else(
            || p.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    };
    let mut header = vec![String::new()];
    header.extend((0..es.len()).map(|j| format!("#{j}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = es
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut r = vec![format!("#{i} {}", label(&a.images[i]))];
            r.extend(es.iter().map(|f| format!("{:.3}", e.cosine(f))));
            r
        })
        .collect();
    println!(
        "cosine similarity ({}, {} faces embedded in {ms:.0} ms; same person scores high)",
        embedder.name(),
        es.len()
    );
    print!("{}", bench::table(&header, &rows));
    Ok(ExitCode::SUCCESS)
}

fn list_models(models: &Path) -> Result<ExitCode> {
    let names = bundle::list(models)?;
    let mut rows = Vec::new();
    let mut bad = 0;
    for n in &names {
        match Bundle::open_named(models, n) {
            Ok(b) => {
                let m = &b.manifest;
                let thr = match (m.kind, m.calibrated_thresholds()) {
                    (Kind::Detector, _) => "-".to_string(),
                    (_, None) => "uncalibrated".to_string(),
                    (_, Some(t)) => format!("unmasked {:?} masked {:?}", t.unmasked, t.masked),
                };
                rows.push(vec![
                    n.clone(),
                    m.kind.to_string(),
                    m.model.precision.clone(),
                    format!("{:.1}", m.model.bytes as f64 / 1e6),
                    m.model.sha256[..12].to_string(),
                    thr,
                    "ok".into(),
                ]);
            }
            Err(e) => {
                bad += 1;
                rows.push(vec![
                    n.clone(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    e.to_string(),
                ]);
            }
        }
    }
    println!("models in {}", models.display());
    print!(
        "{}",
        bench::table(
            &[
                "bundle",
                "kind",
                "precision",
                "MB",
                "sha256",
                "thresholds",
                "check"
            ],
            &rows
        )
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Real aligned crops for benchmarking: the pipeline's reference crops.
fn bench_crops(models: &Path, size: u32, n: usize) -> Result<Vec<image::RgbImage>> {
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

fn bench_worker(models: &Path, a: WorkerArgs) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let e = load_embedder(models, &a.bundle, a.threads, a.batch, a.precision)?;
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
        bundle: match a.precision {
            Precision::F32 => a.bundle,
            Precision::F16 => format!("{} (f16)", a.bundle),
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
fn find_python(models: &Path, flag: Option<&str>) -> Option<String> {
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

fn run_json(cmd: &mut Command) -> Result<Measurement> {
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

fn bench_embed(models: &Path, a: BenchEmbedArgs) -> Result<ExitCode> {
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
                let precisions: &[&str] = if a.f16 && is_fp32 {
                    &["f32", "f16"]
                } else {
                    &["f32"]
                };
                for p in precisions {
                    let m = run_json(
                        Command::new(&exe)
                            .arg("--models")
                            .arg(models)
                            .args(["bench", "embed-worker", "--bundle", b, "--precision", p])
                            .args(["--threads", &t.to_string(), "--batch", &n.to_string()])
                            .args(["--faces", &a.faces.to_string()]),
                    )?;
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

fn bench_scan(a: BenchScanArgs) -> Result<ExitCode> {
    use facegate::gallery::bench::{bench_scan, measure_enrol_stall, BenchConfig};
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
fn find_bench_ort_script() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FACEGATE_BENCH_ORT") {
        return Some(PathBuf::from(p));
    }
    let candidates = [
        PathBuf::from("models/bench_ort.py"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/bench_ort.py"),
    ];
    candidates.into_iter().find(|p| p.exists())
}

#[derive(Serialize)]
struct DetectLine<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    faces: Option<&'a [Face]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn detect(models: &Path, a: DetectArgs) -> Result<ExitCode> {
    let det = load_detector(models, &a.det)?;
    if let Some(dir) = &a.draw {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for p in &a.images {
        let path = p.to_string_lossy();
        let result = imageio::load_rgb(p)
            .map_err(|e| e.to_string())
            .and_then(|img| {
                det.detect(&img)
                    .map(|f| (img, f))
                    .map_err(|e| e.to_string())
            });
        let line = match &result {
            Ok((_, faces)) => DetectLine {
                path: &path,
                faces: Some(faces),
                error: None,
            },
            Err(e) => DetectLine {
                path: &path,
                faces: None,
                error: Some(e.clone()),
            },
        };
        failed += line.error.is_some() as usize;
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        if let (Some(dir), Ok((img, faces))) = (&a.draw, result) {
            let mut img = img;
            facegate::draw::faces(&mut img, &faces);
            let stem = p
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy());
            let dst = dir.join(format!("{stem}.png"));
            img.save(&dst)
                .with_context(|| format!("writing {}", dst.display()))?;
        }
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn align_cmd(models: &Path, a: AlignArgs) -> Result<ExitCode> {
    let det = load_detector(models, &a.det)?;
    let cfg = align_section(models, &a.bundle)?;
    let img = imageio::load_rgb(&a.image)?;
    let Some((face, crop)) = largest_face_crop(&det, &img, &cfg)? else {
        bail!("{}: no face", a.image.display());
    };
    crop.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "face at {:?} (score {:.3}) aligned to {}",
        face.bbox.map(|v| v.round()),
        face.score,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn mask_cmd(models: &Path, a: MaskArgs) -> Result<ExitCode> {
    let det = load_detector(models, &a.det)?;
    let style: MaskStyle = a.style.parse()?;
    let mut img = imageio::load_rgb(&a.image)?;
    let faces = det.detect(&img)?;
    let Some(face) = largest(&faces) else {
        bail!("{}: no face", a.image.display());
    };
    mask::paint(&mut img, face, &style, a.seed)?;
    img.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// A frame of `w` x `h` holding `photo` scaled to fit (grey letterbox).
fn frame_from(photo: &image::RgbImage, w: u32, h: u32) -> image::RgbImage {
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

fn bench_detect(models: &Path, a: BenchDetectArgs) -> Result<ExitCode> {
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

/// A facegated child for `bench daemon`, killed when dropped.
struct BenchDaemon(std::process::Child);

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn bench_daemon(models: &Path, a: BenchDaemonArgs) -> Result<ExitCode> {
    use facegate::protocol::{Client, EnrollSource, InlineImage, Request, Response, Stages};
    use std::time::{Duration, Instant};
    let facegated = match a.facegated.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("locating facegated")?
            .join("facegated"),
    };
    let photos = models.join("photos/face_recognition");
    let photo = imageio::load_rgb(&photos.join("obama3.jpg"))?;
    let det = TractDetector::from_bundle(
        &Bundle::open_named(models, bundle::DEFAULT_DETECTOR)?,
        &DetectorOptions::default(),
    )?;
    // Frame the photo like a login/door camera at arm's length: a 4:3
    // region three face-widths wide around the face, scaled into the frame
    // (the face is then about a third of the frame's width).
    let probe = {
        let faces = det.detect(&photo)?;
        let f = largest(&faces).context("no face in the benchmark photo")?;
        let fw = f.bbox[2] - f.bbox[0];
        let cx = (f.bbox[0] + f.bbox[2]) / 2.0;
        let cy = (f.bbox[1] + f.bbox[3]) / 2.0;
        let rw = (3.0 * fw)
            .min(photo.width() as f32)
            .min(photo.height() as f32 * 4.0 / 3.0);
        let rh = rw * 3.0 / 4.0;
        let x0 = (cx - rw / 2.0).clamp(0.0, photo.width() as f32 - rw) as u32;
        let y0 = (cy - rh / 2.0).clamp(0.0, photo.height() as f32 - rh) as u32;
        image::imageops::crop_imm(&photo, x0, y0, rw as u32, rh as u32).to_image()
    };
    let work = std::env::temp_dir().join(format!("facegate-bench-daemon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("cam"))?;
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(work.clone());
    let sock = work.join("facegate.sock");
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for size in &a.sizes {
        let (w, h) = parse_size(size)?;
        // The probe frames: unmasked, and masked at the detected landmarks.
        let plain = frame_from(&probe, w, h);
        let faces = det.detect(&plain)?;
        let face = largest(&faces)
            .with_context(|| format!("no face in the {w}x{h} benchmark frame"))?
            .clone();
        let mut masked = plain.clone();
        mask::paint(
            &mut masked,
            &face,
            &MaskStyle::Procedural(mask::Procedural::ALL[0]),
            7,
        )?;
        let show = |img: &image::RgbImage| -> Result<()> {
            let tmp = work.join("next.png.tmp");
            img.save_with_format(&tmp, image::ImageFormat::Png)?;
            std::fs::rename(&tmp, work.join("cam/frame.png"))?;
            // Let the replay source move on to the new picture.
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        };
        show(&plain)?;
        let state = work.join(format!("state-{w}x{h}"));
        let cfg = format!(
            "[daemon]\nsocket = {sock:?}\nstate_dir = {state:?}\n[models]\ndir = {models:?}\n\
             threads = {threads}\ndetect_max_side = {max_side}\n[camera]\nkind = \"replay\"\nreplay = [{cam:?}]\nfps = {fps}\nwidth = {w}\nheight = {h}\n\
             [decision]\nmin_frames = {f}\nmax_frames = {f}\n\
             [thresholds]\nunmasked = 0.5\nmasked = 0.5\n[lockout]\nfree_failures = 1000\n",
            sock = sock.display().to_string(),
            state = state.display().to_string(),
            models = models.display().to_string(),
            cam = work.join("cam").display().to_string(),
            fps = a.fps,
            f = a.frames.max(1),
            threads = a.threads,
            max_side = a.detect_max_side,
        );
        std::fs::write(work.join("config.toml"), cfg)?;
        let t0 = Instant::now();
        let child = std::process::Command::new(&facegated)
            .arg("--config")
            .arg(work.join("config.toml"))
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(work.join("facegated.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", facegated.display()))?;
        let mut daemon = BenchDaemon(child);
        let ready = loop {
            if let Ok(mut c) = Client::connect(&sock, 1000) {
                if let Ok(Response::Status(_)) = c.call(&Request::Status) {
                    break t0.elapsed();
                }
            }
            if let Some(st) = daemon.0.try_wait()? {
                bail!(
                    "facegated exited ({st}): {}",
                    std::fs::read_to_string(work.join("facegated.log")).unwrap_or_default()
                );
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("facegated not ready after 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rss_ready = proc_rss_kib(daemon.0.id());
        let call =
            |req: &Request| -> Result<Response> { Ok(Client::connect(&sock, 60_000)?.call(req)?) };
        let mut images = Vec::new();
        for f in ["obama.jpg", "obama2.jpg"] {
            images.push(InlineImage {
                name: f.into(),
                data_b64: base64::engine::general_purpose::STANDARD
                    .encode(std::fs::read(photos.join(f))?),
            });
        }
        let t_enrol = Instant::now();
        match call(&Request::Enroll {
            user: "alice".into(),
            uid: None,
            source: EnrollSource::Images { images },
        })? {
            Response::Enrolled(_) => {}
            other => bail!("enrolment failed: {other:?}"),
        }
        let enrol_ms = t_enrol.elapsed().as_secs_f64() * 1e3;
        for (label, img) in [
            ("verify, masked", &masked),
            ("verify, unmasked", &plain),
            ("identify, masked", &masked),
        ] {
            show(img)?;
            let mut total = Vec::new();
            let mut st = Stages::default();
            let mut frames = 0u32;
            let mut unlocks = 0usize;
            for _ in 0..a.runs.max(1) {
                let req = if label.starts_with("identify") {
                    Request::Identify { timeout_ms: 5_000 }
                } else {
                    Request::Verify {
                        user: "alice".into(),
                        timeout_ms: 5_000,
                    }
                };
                let t = Instant::now();
                let r = call(&req)?;
                total.push(t.elapsed());
                match r {
                    Response::Unlock {
                        stages, frames: n, ..
                    } => {
                        unlocks += 1;
                        st.add(&stages);
                        // `frames` counts frames that passed; all did when unlocked.
                        frames += n.max(1);
                    }
                    other => {
                        // Not a latency figure; say so once and move on.
                        notes.push(format!("{w}x{h} {label}: {other:?} (row stopped)"));
                        break;
                    }
                }
            }
            let per = |x: f64| format!("{:.1}", x / frames.max(1) as f64);
            let med = bench::median(&total).as_secs_f64() * 1e3;
            rows.push(vec![
                format!("{w}x{h}"),
                label.to_string(),
                format!("{unlocks}/{}", total.len()),
                per(st.capture_ms),
                per(st.detect_ms),
                per(st.align_ms),
                per(st.presence_ms),
                per(st.embed_ms),
                per(st.scan_ms),
                format!(
                    "{:.1}",
                    (st.detect_ms + st.align_ms + st.presence_ms + st.embed_ms + st.scan_ms)
                        / frames.max(1) as f64
                ),
                format!("{med:.0}"),
            ]);
        }
        let rss_after = proc_rss_kib(daemon.0.id());
        notes.push(format!(
            "{w}x{h}: start → ready {:.2} s; enrolment of 2 photos {:.0} ms; resident memory {} MiB at ready, {} MiB after the runs",
            ready.as_secs_f64(),
            enrol_ms,
            rss_ready.map_or("?".into(), |k| (k / 1024).to_string()),
            rss_after.map_or("?".into(), |k| (k / 1024).to_string()),
        ));
        drop(daemon);
    }
    println!(
        "daemon benchmark: facegated on a replay camera ({} fps), {} decisions per row, {} frame(s) fused per decision, \
         [models] threads = {}, detect_max_side = {}; stage columns are ms per frame (mean), as the daemon reports them",
        a.fps, a.runs, a.frames, a.threads, a.detect_max_side
    );
    print!(
        "{}",
        bench::table(
            &[
                "frame",
                "request",
                "unlocked",
                "capture wait",
                "detect",
                "align",
                "presence",
                "embed",
                "scan",
                "compute / frame",
                "request → decision (median ms)",
            ],
            &rows
        )
    );
    for n in notes {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A frame size given as `WxH`.
fn parse_size(size: &str) -> Result<(u32, u32)> {
    size.split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .with_context(|| format!("size {size:?} is not WxH"))
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn bench_mask(models: &Path, a: BenchMaskArgs) -> Result<ExitCode> {
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

fn eval_lfw(models: &Path, a: EvalLfwArgs) -> Result<ExitCode> {
    let cache = a.cache.unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/facegate/eval")
    });
    let o = facegate::eval::report::Options {
        data: a.data,
        out: a.out,
        models: models.to_path_buf(),
        bundle: a.bundle,
        detector: a.detector,
        masks: a.masks,
        compare: a.compare,
        target_far: a.target_far,
        cache,
        threads: a.threads,
        detect_max_side: a.detect_max_side,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    facegate::eval::report::run(&o)?;
    Ok(ExitCode::SUCCESS)
}
