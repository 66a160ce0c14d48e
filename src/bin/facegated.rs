//! `facegated`: the facegate daemon.
//!
//! This build verifies and loads the model bundles (`--self-test`); the
//! camera loop and the Unix-socket service are built on top of it (issue #5).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use facegate::bundle::{self, Bundle, Kind};
use facegate::embed::{Embedder, EmbedderOptions, TractEmbedder};

/// Face unlock daemon: watches a camera, recognises enrolled faces (masked or
/// not) and answers unlock/deny on a Unix socket to the PAM helper
/// (facegate-unlock) and to door controllers.
///
/// In this build the daemon loads and checks its models and exits; serving
/// the socket is not implemented yet, and without --self-test it says so and
/// exits with status 78 (EX_CONFIG).
#[derive(Parser)]
#[command(name = "facegated", version)]
struct Args {
    /// Folder holding bundles/<name>/ (default: $FACEGATE_MODELS, ./models/out, /usr/lib/facegate/models).
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Embedder bundle.
    #[arg(long, default_value = bundle::DEFAULT_EMBEDDER)]
    embedder: String,
    /// Detector bundle.
    #[arg(long, default_value = bundle::DEFAULT_DETECTOR)]
    detector: String,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Unix socket the daemon will listen on.
    #[arg(long, default_value = "/run/facegate/facegate.sock")]
    socket: PathBuf,
    /// Verify and load the bundles, embed one blank crop, report timings, exit.
    #[arg(long)]
    self_test: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let models = args
        .models
        .clone()
        .unwrap_or_else(bundle::default_models_dir);
    let t0 = Instant::now();
    let det = Bundle::open_named(&models, &args.detector).context("detector bundle")?;
    det.expect_kind(Kind::Detector)?;
    let emb = Bundle::open_named(&models, &args.embedder).context("embedder bundle")?;
    let embedder = TractEmbedder::from_bundle(
        &emb,
        &EmbedderOptions {
            max_batch: 1,
            threads: args.threads,
            ..Default::default()
        },
    )?;
    let blank = image::RgbImage::new(embedder.crop_size(), embedder.crop_size());
    let t1 = Instant::now();
    let e = embedder.embed(&blank)?;
    log::info!(
        "models ready in {:.0} ms: detector {} ({}), embedder {} (sha256 {}, {}-d, first embedding {:.1} ms)",
        t0.elapsed().as_secs_f64() * 1e3,
        det.name(),
        &det.sha256()[..12],
        embedder.name(),
        &embedder.sha256()[..12],
        e.dim(),
        t1.elapsed().as_secs_f64() * 1e3
    );
    if args.self_test {
        return Ok(ExitCode::SUCCESS);
    }
    log::error!(
        "serving {} is not implemented in this build (the socket service is issue #5); use --self-test",
        args.socket.display()
    );
    Ok(ExitCode::from(78))
}
