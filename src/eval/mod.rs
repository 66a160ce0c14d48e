//! Recognition accuracy, measured with the product's own pipeline (issue 6).
//!
//! [`lfw`] reads the LFW layout and pairs; [`cache`] keeps per-image
//! results on disk (append-only, so an interrupted run resumes);
//! [`extract`] runs detect → (mask → detect) → align → presence → embed on
//! every image of a condition; [`stats`] holds the metrics (10-fold
//! accuracy, TAR at FAR, EER, open-set DIR); [`plot`] draws PNG charts
//! without any system font; [`report`] runs every protocol and writes
//! `report.md`; [`calibrate`] chooses the daemon's thresholds; [`ident`]
//! calibrates identification for the gallery's size and checks it; [`seed`]
//! reproduces the seed report's 1-NN protocol; [`m2fred`] measures real
//! masks (`facegate eval m2fred`); [`presence`] compares the mask presence
//! rules and simulates the mixed rule as deployed; [`track`] measures
//! detection by tracking against the whole-frame detector.

pub mod antispoof;
pub mod cache;
pub mod calibrate;
pub mod crops;
pub mod extract;
pub mod ident;
pub mod lfw;
pub mod m2fred;
pub mod plot;
pub mod presence;
pub mod report;
pub mod seed;
pub mod stats;
pub mod track;

use std::path::PathBuf;

/// Bump when anything that changes a cached result changes (detector
/// options, face choice, mask seeding, presence rule, alignment code).
pub const PIPELINE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Detect(#[from] crate::face::detect::DetectError),
    #[error(transparent)]
    Embed(#[from] crate::face::embed::EmbedError),
    #[error(transparent)]
    Align(#[from] crate::face::align::AlignError),
    #[error(transparent)]
    Mask(#[from] crate::face::mask::MaskError),
    #[error(transparent)]
    Template(#[from] crate::face::mask::template::TemplateError),
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("{0}")]
    Other(String),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// FNV-1a, for seeds derived from image names (stable across platforms).
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
