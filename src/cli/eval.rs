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
    /// Real masks (M2FRED subset, issue 14 §5): masked probe vs unmasked
    /// enrolment and unmasked vs unmasked; TAR at FAR, EER, rank 1, mask
    /// presence, FRR/FAR at the manifest's thresholds; writes <out>/report.md.
    M2fred(EvalM2fredArgs),
    /// RGB anti-spoofing model: BPCER on bona fide folders, APCER on attack
    /// folders, at each threshold, with the sample sizes (docs/LIVENESS.md).
    Antispoof(EvalAntispoofArgs),
}

#[derive(Args)]
pub(crate) struct EvalAntispoofArgs {
    /// A folder of bona fide face images (repeatable); `DIR#SUFFIX` keeps
    /// only files whose names end with SUFFIX (M2FRED masked: `#-1-0.png`).
    #[arg(long = "bona-fide", value_name = "DIR")]
    bona_fide: Vec<String>,
    /// A folder of attack images (photos of photos or screens; repeatable).
    #[arg(long, value_name = "DIR")]
    attack: Vec<String>,
    /// Anti-spoofing bundle.
    #[arg(long, default_value = "antispoof-rgb")]
    bundle: String,
    /// Detector bundle.
    #[arg(long, default_value = bundle::DEFAULT_DETECTOR)]
    detector: String,
    /// At most this many images per folder, evenly spaced in name order (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Thresholds to report, comma-separated (a face scoring below is refused).
    #[arg(long, value_delimiter = ',', default_values_t = [0.3, 0.5, 0.7])]
    thresholds: Vec<f32>,
}

pub(crate) fn eval_antispoof(models: &Path, a: EvalAntispoofArgs) -> Result<ExitCode> {
    use crate::eval::antispoof::{run, Options, Set};
    if a.bona_fide.is_empty() && a.attack.is_empty() {
        anyhow::bail!("give at least one --bona-fide or --attack folder");
    }
    if let Some(t) = a.thresholds.iter().find(|t| !(**t > 0.0 && **t < 1.0)) {
        anyhow::bail!("--thresholds {t}: expected scores in (0, 1)");
    }
    let sets = a
        .bona_fide
        .iter()
        .map(|s| Set::parse(s, false))
        .chain(a.attack.iter().map(|s| Set::parse(s, true)))
        .collect();
    let o = Options {
        models: models.to_path_buf(),
        bundle: a.bundle,
        detector: a.detector,
        sets,
        limit: a.limit,
        thresholds: a.thresholds,
    };
    println!("{}", run(&o)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub(crate) struct EvalM2fredArgs {
    /// The M2FRED subset: <person>/<S>-<F>-0.png (F = 1 masked, 0 unmasked).
    /// Research-only: read at run time, never copied.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Report folder (report.md).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Embedder bundles to evaluate (repeatable; default: the default embedder).
    #[arg(long = "bundle", value_name = "NAME")]
    bundles: Vec<String>,
    /// Detector bundle.
    #[arg(long, default_value = bundle::DEFAULT_DETECTOR)]
    detector: String,
    /// Also evaluate periocular crops greyed from CUT inter-ocular distances
    /// below the eyes (repeatable), both sides.
    #[arg(long, value_name = "CUT")]
    periocular: Vec<f32>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub(crate) fn eval_m2fred(models: &Path, a: EvalM2fredArgs) -> Result<ExitCode> {
    let bundles = if a.bundles.is_empty() {
        vec![bundle::default_embedder(models).to_string()]
    } else {
        a.bundles
    };
    if let Some(c) = a.periocular.iter().find(|c| !c.is_finite() || **c < 0.0) {
        anyhow::bail!("--periocular {c}: expected a cut >= 0 (inter-ocular distances)");
    }
    let o = crate::eval::m2fred::Options {
        data: a.data,
        out: a.out,
        models: models.to_path_buf(),
        bundles,
        detector: a.detector,
        periocular: a.periocular,
        threads: a.threads,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let text = crate::eval::m2fred::run(&o)?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub(crate) struct EvalLfwArgs {
    /// LFW folder holding deepfunneled/ and pairs.txt.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Report folder (report.md, PNGs, thresholds.toml).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Embedder bundle to evaluate (default: the folder's default embedder,
    /// the trained one when installed).
    #[arg(long)]
    bundle: Option<String>,
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
        bundle: super::face::embedder_name(models, &a.bundle),
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
