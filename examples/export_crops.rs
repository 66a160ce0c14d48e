//! Training crops through the device pipeline (issue 14 §2), for `models/train`.
//!
//! `cargo run --release --example export_crops -- --lfw LFW --images LIST --out DIR
//!  [--masks 2] [--seed 0] [--threads 2] [--embedder facenet-fp32] [--detector retinaface-mnet025]`
//!
//! LIST holds image names relative to `LFW/deepfunneled/`, one per line. The
//! crops (RGB, the embedder's aligned size) land in DIR as described in
//! `facegate::eval::crops`; the last stdout line is a JSON summary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a workstation tool, not a daemon path

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use facegate::bundle::{default_models_dir, DEFAULT_DETECTOR};
use facegate::eval::crops::{export, CropJob};

#[derive(Parser)]
struct Args {
    /// LFW folder holding deepfunneled/.
    #[arg(long)]
    lfw: PathBuf,
    /// Image list (names relative to deepfunneled/), one per line.
    #[arg(long)]
    images: PathBuf,
    /// Output folder (the crop cache).
    #[arg(long)]
    out: PathBuf,
    /// Masked variants per image.
    #[arg(long, default_value_t = 2)]
    masks: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Embedder bundle whose [align] section (size, template) is used.
    #[arg(long, default_value = "facenet-fp32")]
    embedder: String,
    #[arg(long, default_value = DEFAULT_DETECTOR)]
    detector: String,
    /// Bundles folder (default: $FACEGATE_MODELS, ./models/out, ...).
    #[arg(long)]
    models: Option<PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let text = std::fs::read_to_string(&a.images)
        .with_context(|| format!("reading {}", a.images.display()))?;
    let images: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let job = CropJob {
        root: a.lfw.join("deepfunneled"),
        images,
        masks: a.masks,
        seed: a.seed,
    };
    let models = a.models.unwrap_or_else(default_models_dir);
    let e = export(&job, &models, &a.detector, &a.embedder, &a.out, a.threads)?;
    println!(
        "{{\"key\": \"{}\", \"data\": \"{}\", \"index\": \"{}\", \"rows\": {}, \"failures\": {}, \"seconds\": {:.1}, \"cached\": {}}}",
        e.key,
        e.data.display(),
        e.index.display(),
        e.rows,
        e.failures,
        e.seconds,
        e.cached
    );
    Ok(())
}
