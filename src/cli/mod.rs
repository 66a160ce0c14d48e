//! The `facegate` command line, one module per command family: the face
//! tools ([`face`]), bundles and CPU ([`models`]), benchmarks ([`bench`],
//! [`bench_daemon`]), accuracy ([`eval`]) and the daemon client ([`daemon`]).
//! `src/bin/facegate.rs` only calls [`main`].

pub mod bench;
pub mod bench_daemon;
pub mod bench_track;
pub mod daemon;
pub mod eval;
pub mod face;
pub mod models;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bundle;
use bench::BenchCmd;
use eval::EvalCmd;
use face::{AlignArgs, CompareArgs, DetectArgs, EmbedArgs, MaskArgs};

/// Face (and masked-face) recognition for door and login unlock, offline.
///
/// Model bundles come from `models/build` (see README.md); they are looked up
/// in --models, else $FACEGATE_MODELS, else ./models/out, else
/// /usr/lib/facegate/models.
#[derive(Parser)]
#[command(name = "facegate", version, propagate_version = true)]
pub(crate) struct Cli {
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
pub(crate) enum Cmd {
    /// Print one JSON line per image: {"path", "embedding": [floats]} or {"path", "error"}.
    ///
    /// Exit status is 0 when every image was embedded, 1 when any failed (the
    /// others are still printed).
    Embed(EmbedArgs),
    /// Print the cosine similarity of every pair of aligned face crops as a table.
    Compare(CompareArgs),
    /// List the model bundles and verify each one (manifest, size, sha256,
    /// signature); `pack` and `install` carry a bundle to a device.
    ///
    /// With --config or --trusted-key, also say whether facegated would
    /// load each bundle under that signature policy (docs/SIGNING.md); a
    /// bundle it would refuse then fails. Exit status 1 when any bundle fails.
    Models(models::ModelsArgs),
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
    Daemon(daemon::DaemonCmd),
}

pub fn main() -> ExitCode {
    // FACEGATE_GENERATE_DOCS=DIR: man pages and completions (scripts/package).
    if let Some(code) = facegate_docs::generate_if_asked::<Cli>() {
        return code;
    }
    if let Err(e) = crate::crash::install_fatal_handlers("facegate") {
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
    if let Err(e) = crate::cpu::configure(crate::cpu::CpuPolicy { amx: cli.amx }) {
        eprintln!("facegate: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Cmd::Cpu => models::cpu_report(),
        Cmd::Embed(a) => face::embed(&models, a),
        Cmd::Detect(a) => face::detect(&models, a),
        Cmd::Align(a) => face::align_cmd(&models, a),
        Cmd::Mask(a) => face::mask_cmd(&models, a),
        Cmd::Compare(a) => face::compare(&models, a),
        Cmd::Models(a) => models::models_cmd(&models, cli.models.as_deref(), &a),
        Cmd::Bench(BenchCmd::Embed(a)) => bench::bench_embed(&models, a),
        Cmd::Bench(BenchCmd::EmbedWorker(a)) => bench::bench_worker(&models, a),
        Cmd::Bench(BenchCmd::Scan(a)) => bench::bench_scan(a),
        Cmd::Bench(BenchCmd::Detect(a)) => bench::bench_detect(&models, a),
        Cmd::Bench(BenchCmd::Mask(a)) => bench::bench_mask(&models, a),
        Cmd::Bench(BenchCmd::Daemon(a)) => bench_daemon::bench_daemon(&models, a),
        Cmd::Bench(BenchCmd::Track(a)) => bench_track::bench_track(&models, a),
        Cmd::Eval(EvalCmd::Lfw(a)) => eval::eval_lfw(&models, a),
        Cmd::Eval(EvalCmd::M2fred(a)) => eval::eval_m2fred(&models, a),
        Cmd::Eval(EvalCmd::Antispoof(a)) => eval::eval_antispoof(&models, a),
        Cmd::Daemon(c) => daemon::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("facegate: {e:#}");
            ExitCode::from(2)
        }
    }
}
