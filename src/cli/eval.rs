//! `facegate eval`: accuracy measured with the product's pipeline (docs/ACCURACY.md).

use crate::bundle;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum EvalCmd {
    /// LFW: 10-fold accuracy, TAR at FAR, EER, open-set, the seed report's
    /// protocol, enrolment strategies, calibrated thresholds; writes
    /// <out>/report.md and PNG plots.
    Lfw(EvalLfwArgs),
}

#[derive(Args)]
pub(crate) struct EvalLfwArgs {
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
    /// Only these pair folds (1-based, e.g. `1-5`) and their people: the
    /// held-out half of an identity-disjoint training split (docs/TRAINING.md).
    #[arg(long, value_name = "LIST")]
    folds: Option<String>,
    /// Periocular crops: grey every crop from CUT inter-ocular distances
    /// below the eyes down (the masked-probe comparison of
    /// `[thresholds] periocular`; docs/ACCURACY.md). Without a value: 0.25.
    #[arg(long, value_name = "CUT", num_args = 0..=1,
          default_missing_value = "0.25")]
    periocular: Option<f32>,
}

pub(crate) fn eval_lfw(models: &Path, a: EvalLfwArgs) -> Result<ExitCode> {
    let cache = a.cache.unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/facegate/eval")
    });
    let o = crate::eval::report::Options {
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
        folds: a
            .folds
            .as_deref()
            .map(crate::eval::lfw::parse_folds)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--folds: {e}"))?,
        periocular: a.periocular,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    crate::eval::report::run(&o)?;
    Ok(ExitCode::SUCCESS)
}
