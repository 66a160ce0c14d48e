//! Model bundles: a folder holding `manifest.toml` and the model file it names.
//!
//! Bundles are produced by the workstation pipeline (`models/build`) and land
//! in a git-ignored folder (`models/out/bundles/<name>/`). Opening a bundle
//! checks the manifest, the size and the sha256 of the model file, so a
//! missing, truncated or tampered model is refused with a clear error before
//! any inference engine sees it. [`sign`] checks a bundle's signature
//! (`manifest.sig`) against the keys a daemon trusts ([`Bundle::open_trusted`]).

pub mod archive;
pub mod presence;
pub mod sign;

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use sign::{SignError, Status, TrustPolicy};

/// The manifest schema this build reads.
pub const SCHEMA: u32 = 1;

/// The pretrained embedder bundle used when none is named and no trained
/// one is installed (see docs/PERFORMANCE.md for why).
pub const DEFAULT_EMBEDDER: &str = "mobilefacenet-fp32";

/// The masked-trained embedder `models/build --lfw PATH --train` installs
/// (docs/TRAINING.md): preferred over [`DEFAULT_EMBEDDER`] when present.
pub const TRAINED_EMBEDDER: &str = "mobilefacenet-masked";

/// The embedder used when none is named: [`TRAINED_EMBEDDER`] when the
/// models folder holds it, else [`DEFAULT_EMBEDDER`]. Presence is all that
/// is checked here; opening it checks its files and signature as for any
/// bundle, so a broken trained bundle is an error, never a silent fallback.
pub fn default_embedder(models_dir: &Path) -> &'static str {
    if models_dir
        .join("bundles")
        .join(TRAINED_EMBEDDER)
        .join("manifest.toml")
        .exists()
    {
        TRAINED_EMBEDDER
    } else {
        DEFAULT_EMBEDDER
    }
}

/// The detector bundle used when none is named.
pub const DEFAULT_DETECTOR: &str = "retinaface-mnet025";
/// The RGB anti-spoofing bundle `[liveness.rgb]` names unless told
/// otherwise (shipped, run only when a `[liveness]` policy asks for "rgb").
pub const DEFAULT_ANTISPOOF: &str = "antispoof-rgb";

/// Largest model file we are willing to read (a FaceNet fp32 is ~94 MB).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("model bundle {0} not found (build the bundles with `models/build`, or point --models / FACEGATE_MODELS at them)")]
    Missing(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {path} is invalid: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("bundle {name}: model file {path} is {actual} bytes but the manifest says {expected} (truncated or replaced; rebuild with `models/build`)")]
    Size {
        name: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("bundle {name}: model file {path} has sha256 {actual} but the manifest says {expected} (corrupt or tampered; rebuild with `models/build`)")]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("bundle {dir}: {source}")]
    Signature {
        dir: PathBuf,
        #[source]
        source: SignError,
    },
    #[error("bundle {name} is a {found} model, but a {expected} model is needed here")]
    Kind {
        name: String,
        found: Kind,
        expected: Kind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Embedder,
    Detector,
    /// A presentation-attack classifier on a face crop (`[antispoof]`).
    Antispoof,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Embedder => "embedder",
            Kind::Detector => "detector",
            Kind::Antispoof => "antispoof",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Layout {
    #[serde(rename = "NHWC")]
    Nhwc,
    #[serde(rename = "NCHW")]
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Colour {
    #[serde(rename = "RGB")]
    Rgb,
    #[serde(rename = "BGR")]
    Bgr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub format: String,
    pub precision: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    pub name: String,
    pub layout: Layout,
    pub colour: Colour,
    /// Shape with -1 for dimensions chosen at run time (batch, or frame size).
    pub shape: Vec<i64>,
    /// Per-channel mean and std, in the manifest's colour order: x' = (x - mean) / std.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub name: String,
    pub dim: usize,
    pub l2_normalised: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignSection {
    /// Side of the square crop, in pixels.
    pub size: u32,
    /// Where the five landmarks (left eye, right eye, nose, left and right
    /// mouth corners, in image coordinates) land in the crop.
    pub template: [[f32; 2]; 5],
    pub border: String,
}

/// An anti-spoofing classifier's crop and output (docs/LIVENESS.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntispoofSection {
    /// The output holding the score (one value per face; higher = real).
    pub output: String,
    /// The crop is a square centred on the detector's face box, this many
    /// times its longer side, resized to the input's size.
    pub crop_scale: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    pub outputs: Vec<String>,
    pub strides: Vec<u32>,
    pub anchor_sizes: Vec<Vec<f32>>,
    pub variances: [f32; 2],
    pub score_threshold: f32,
    pub nms_iou: f32,
}

/// Operating thresholds on cosine similarity. Absent until the evaluation
/// calibrates them (`status = "uncalibrated"`).
#[derive(Debug, Clone, Deserialize)]
pub struct Thresholds {
    pub status: String,
    #[serde(default)]
    pub unmasked: Option<f32>,
    #[serde(default)]
    pub masked: Option<f32>,
    /// Masked probe vs enrolment, both as periocular crops cut
    /// `periocular_cut` IODs below the eyes (`facegate eval lfw
    /// --periocular`); with both set the daemon compares masked probes that
    /// way.
    #[serde(default)]
    pub periocular: Option<f32>,
    #[serde(default)]
    pub periocular_cut: Option<f32>,
    #[serde(default)]
    pub note: Option<String>,
    /// Identification (issue 15, [`crate::ident`]): per-person impostor FAR
    /// levels, strictly decreasing…
    #[serde(default)]
    pub identify_far: Option<Vec<f64>>,
    /// …and per level the threshold of an unmasked and a masked probe.
    /// All three or none; bundles calibrated before issue 15 have none and
    /// are "uncalibrated for identification".
    #[serde(default)]
    pub identify_unmasked: Option<Vec<f32>>,
    #[serde(default)]
    pub identify_masked: Option<Vec<f32>>,
    /// Per level, the threshold of a masked probe compared as a periocular
    /// crop (same levels; only with `periocular`/`periocular_cut`).
    #[serde(default)]
    pub identify_periocular: Option<Vec<f32>>,
}

impl Thresholds {
    /// The identification table, if the calibration wrote one (validated
    /// with the manifest).
    pub fn identify(&self) -> Option<crate::ident::IdentTable> {
        match (
            &self.identify_far,
            &self.identify_unmasked,
            &self.identify_masked,
        ) {
            (Some(far), Some(unmasked), Some(masked)) => Some(crate::ident::IdentTable {
                far: far.clone(),
                unmasked: unmasked.clone(),
                masked: masked.clone(),
                periocular: self.identify_periocular.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    pub kind: Kind,
    pub version: String,
    pub model: ModelSection,
    pub input: InputSection,
    #[serde(default)]
    pub output: Option<OutputSection>,
    #[serde(default)]
    pub align: Option<AlignSection>,
    #[serde(default)]
    pub detector: Option<DetectorSection>,
    #[serde(default)]
    pub antispoof: Option<AntispoofSection>,
    #[serde(default)]
    pub provenance: toml::Table,
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
    /// Mask presence classifier (embedders only; issue 14 §6).
    #[serde(default)]
    pub presence: Option<presence::PresenceSection>,
    /// A second model for periocular crops (embedders only): the daemon
    /// embeds whole faces with `model` and the periocular crops of masked
    /// probes and of enrolment with this one (docs/TRAINING.md, a tail
    /// trained for masks beside the pretrained one). Same input, output
    /// and alignment as `model`.
    #[serde(default)]
    pub periocular_model: Option<ModelSection>,
}

impl ModelSection {
    fn validate(&self, section: &str) -> Result<(), String> {
        let sha = &self.sha256;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{section}.sha256 {sha:?} is not 64 hex digits"));
        }
        if self.file.is_empty()
            || self.file.contains('/')
            || self.file == ".."
            || self.file == "."
            || self.file == "manifest.toml"
            || self.file == sign::SIG_FILE
        {
            return Err(format!(
                "{section}.file {:?} must be a plain file name inside the bundle",
                self.file
            ));
        }
        if self.bytes == 0 || self.bytes > MAX_MODEL_BYTES {
            return Err(format!("{section}.bytes {} is out of range", self.bytes));
        }
        if self.format != "onnx" {
            return Err(format!(
                "{section}.format {:?} is not supported (onnx)",
                self.format
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// Parse and validate a manifest. Pure: no file access.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.message().to_string())?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!(
                "schema {} is not supported (this build reads schema {SCHEMA})",
                self.schema
            ));
        }
        if self.name.is_empty() {
            return Err("name is empty".into());
        }
        self.model.validate("model")?;
        if let Some(p) = &self.periocular_model {
            if self.kind != Kind::Embedder {
                return Err("only an embedder has a [periocular_model] section".into());
            }
            p.validate("periocular_model")?;
            if p.file == self.model.file {
                return Err(format!(
                    "periocular_model.file {:?} is the model's own file",
                    p.file
                ));
            }
        }
        if self.input.shape.len() != 4 || self.input.shape.iter().any(|&d| d == 0 || d < -1) {
            return Err(format!(
                "input.shape {:?} must be 4 dimensions, each > 0 or -1",
                self.input.shape
            ));
        }
        if self.input.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || self.input.mean.iter().any(|m| !m.is_finite())
        {
            return Err("input.mean/std must be finite and std non-zero".into());
        }
        match self.kind {
            Kind::Embedder => {
                let out = self
                    .output
                    .as_ref()
                    .ok_or("an embedder needs an [output] section")?;
                if out.dim == 0 || out.dim > 4096 {
                    return Err(format!("output.dim {} is out of range", out.dim));
                }
                let al = self
                    .align
                    .as_ref()
                    .ok_or("an embedder needs an [align] section")?;
                if !(16..=1024).contains(&al.size) {
                    return Err(format!("align.size {} is out of range", al.size));
                }
                if al.template.iter().flatten().any(|v| !v.is_finite()) {
                    return Err("align.template has non-finite values".into());
                }
                let (h, w, c) = match self.input.layout {
                    Layout::Nhwc => (
                        self.input.shape[1],
                        self.input.shape[2],
                        self.input.shape[3],
                    ),
                    Layout::Nchw => (
                        self.input.shape[2],
                        self.input.shape[3],
                        self.input.shape[1],
                    ),
                };
                if h != al.size as i64 || w != al.size as i64 || c != 3 {
                    return Err(format!(
                        "input.shape {:?} does not match a {}x{} RGB crop",
                        self.input.shape, al.size, al.size
                    ));
                }
                if let Some(p) = &self.presence {
                    p.validate(out.dim, &self.model.sha256)?;
                }
            }
            Kind::Detector => {
                if self.presence.is_some() {
                    return Err("a detector has no [presence] section".into());
                }
                let d = self
                    .detector
                    .as_ref()
                    .ok_or("a detector needs a [detector] section")?;
                if d.strides.len() != d.anchor_sizes.len() || d.strides.is_empty() {
                    return Err("detector.strides and detector.anchor_sizes must pair up".into());
                }
            }
            Kind::Antispoof => {
                if self.presence.is_some() || self.thresholds.is_some() {
                    return Err("an antispoof bundle has no [presence] or [thresholds]".into());
                }
                let a = self
                    .antispoof
                    .as_ref()
                    .ok_or("an antispoof bundle needs an [antispoof] section")?;
                if !(a.crop_scale.is_finite() && (0.5..=4.0).contains(&a.crop_scale)) {
                    return Err(format!(
                        "antispoof.crop_scale {} is not in 0.5..=4",
                        a.crop_scale
                    ));
                }
                let s = &self.input.shape;
                let (h, w, c) = match self.input.layout {
                    Layout::Nhwc => (s[1], s[2], s[3]),
                    Layout::Nchw => (s[2], s[3], s[1]),
                };
                if h != w || !(16..=1024).contains(&h) || c != 3 {
                    return Err(format!(
                        "input.shape {s:?} is not a square RGB crop of 16 to 1024 pixels"
                    ));
                }
            }
        }
        if let Some(t) = &self.thresholds {
            for v in [t.unmasked, t.masked].into_iter().flatten() {
                if !(-1.0..=1.0).contains(&v) {
                    return Err(format!("threshold {v} is not a cosine in [-1, 1]"));
                }
            }
            let parts = [
                t.identify_far.is_some(),
                t.identify_unmasked.is_some(),
                t.identify_masked.is_some(),
            ];
            if parts.iter().any(|&p| p) && !parts.iter().all(|&p| p) {
                return Err(
                    "thresholds: identify_far, identify_unmasked and identify_masked go together"
                        .into(),
                );
            }
            if let Some(table) = t.identify() {
                table.validate().map_err(|e| format!("thresholds: {e}"))?;
            }
        }
        Ok(())
    }

    /// Calibrated thresholds, or None while the manifest says "uncalibrated".
    pub fn calibrated_thresholds(&self) -> Option<&Thresholds> {
        self.thresholds
            .as_ref()
            .filter(|t| t.status == "calibrated")
    }
}

/// A bundle whose model bytes have been read and verified against its manifest.
#[derive(Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    model: Vec<u8>,
    /// `[periocular_model]`'s bytes, verified like `model`.
    periocular_model: Option<Vec<u8>>,
    /// The manifest's bytes as read and parsed: what a signature covers.
    manifest_bytes: Vec<u8>,
    /// `manifest.sig`'s text, when there is one.
    signature: Option<String>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("dir", &self.dir)
            .field("name", &self.manifest.name)
            .field("bytes", &self.model.len())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `dir/manifest.sig`'s text, None when there is no such file.
fn read_signature(dir: &Path) -> Result<Option<String>, BundleError> {
    let path = dir.join(sign::SIG_FILE);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(sign::MAX_SIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&path))?;
    let bad = |m: String| BundleError::Signature {
        dir: dir.to_path_buf(),
        source: SignError::Malformed(m),
    };
    if bytes.len() as u64 > sign::MAX_SIG_BYTES {
        return Err(bad(format!("larger than {} bytes", sign::MAX_SIG_BYTES)));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| bad("not UTF-8 text".into()))
}

/// Read the model file `m` names in `dir` and check its size and sha256.
fn read_verified(dir: &Path, name: &str, m: &ModelSection) -> Result<Vec<u8>, BundleError> {
    let path = dir.join(&m.file);
    let file = fs::File::open(&path).map_err(io_err(&path))?;
    let actual = file.metadata().map_err(io_err(&path))?.len();
    if actual != m.bytes {
        return Err(BundleError::Size {
            name: name.to_string(),
            path,
            expected: m.bytes,
            actual,
        });
    }
    let mut model = Vec::with_capacity(actual as usize);
    file.take(MAX_MODEL_BYTES)
        .read_to_end(&mut model)
        .map_err(io_err(&path))?;
    let digest = sha256_hex(&model);
    if !digest.eq_ignore_ascii_case(&m.sha256) {
        return Err(BundleError::Checksum {
            name: name.to_string(),
            path,
            expected: m.sha256.clone(),
            actual: digest,
        });
    }
    Ok(model)
}

impl Bundle {
    /// Open `dir`, parse its manifest, read the model and verify size and
    /// sha256. The signature is not checked (see [`Bundle::open_trusted`]);
    /// [`Bundle::signature_status`] reports it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle, BundleError> {
        Bundle::open_inner(dir.as_ref(), None).map(|(b, _)| b)
    }

    /// Open `dir` as the daemon does: the signature is checked against
    /// `policy` first (on the very manifest bytes that are then parsed), then
    /// the model against the manifest. Returns what the signature is.
    pub fn open_trusted(
        dir: impl AsRef<Path>,
        policy: &TrustPolicy,
    ) -> Result<(Bundle, Status), BundleError> {
        let (b, st) = Bundle::open_inner(dir.as_ref(), Some(policy))?;
        Ok((b, st.unwrap_or(Status::Unsigned)))
    }

    /// [`Bundle::open_trusted`] on the bundle called `name` under `models_dir/bundles/`.
    pub fn open_named_trusted(
        models_dir: &Path,
        name: &str,
        policy: &TrustPolicy,
    ) -> Result<(Bundle, Status), BundleError> {
        Bundle::open_trusted(Bundle::named_dir(models_dir, name)?, policy)
    }

    fn open_inner(
        dir: &Path,
        policy: Option<&TrustPolicy>,
    ) -> Result<(Bundle, Option<Status>), BundleError> {
        let mpath = dir.join("manifest.toml");
        if !mpath.exists() {
            return Err(BundleError::Missing(dir.to_path_buf()));
        }
        let manifest_bytes = fs::read(&mpath).map_err(io_err(&mpath))?;
        let signature = read_signature(dir)?;
        let status = match policy {
            Some(p) => Some(
                p.verify(&manifest_bytes, signature.as_deref())
                    .map_err(|source| BundleError::Signature {
                        dir: dir.to_path_buf(),
                        source,
                    })?,
            ),
            None => None,
        };
        let text = std::str::from_utf8(&manifest_bytes).map_err(|_| BundleError::Manifest {
            path: mpath.clone(),
            message: "not UTF-8 text".into(),
        })?;
        let manifest = Manifest::parse(text).map_err(|message| BundleError::Manifest {
            path: mpath.clone(),
            message,
        })?;
        let model = read_verified(dir, &manifest.name, &manifest.model)?;
        let periocular_model = match &manifest.periocular_model {
            Some(p) => Some(read_verified(dir, &manifest.name, p)?),
            None => None,
        };
        log::debug!("bundle {} verified ({} bytes)", manifest.name, model.len());
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            manifest,
            model,
            periocular_model,
            manifest_bytes,
            signature,
        };
        Ok((bundle, status))
    }

    fn named_dir(models_dir: &Path, name: &str) -> Result<PathBuf, BundleError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(BundleError::Missing(PathBuf::from(name)));
        }
        Ok(models_dir.join("bundles").join(name))
    }

    /// Open the bundle called `name` under `models_dir/bundles/`.
    pub fn open_named(models_dir: &Path, name: &str) -> Result<Bundle, BundleError> {
        Bundle::open(Bundle::named_dir(models_dir, name)?)
    }

    /// What this bundle's signature is with `trusted_keys` trusted (the
    /// policy not applied): for reports. A malformed or non-verifying
    /// signature is an error.
    pub fn signature_status(&self, trusted_keys: &[sign::PublicKey]) -> Result<Status, SignError> {
        let p = TrustPolicy {
            trusted_keys: trusted_keys.to_vec(),
            allow_unsigned: true,
        };
        p.status(&self.manifest_bytes, self.signature.as_deref())
    }

    /// Open and require a kind.
    pub fn open_kind(dir: impl AsRef<Path>, kind: Kind) -> Result<Bundle, BundleError> {
        let b = Bundle::open(dir)?;
        b.expect_kind(kind)?;
        Ok(b)
    }

    pub fn expect_kind(&self, kind: Kind) -> Result<(), BundleError> {
        if self.manifest.kind != kind {
            return Err(BundleError::Kind {
                name: self.manifest.name.clone(),
                found: self.manifest.kind,
                expected: kind,
            });
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The manifest's bytes as read (what the signature covers).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    pub fn model_bytes(&self) -> &[u8] {
        &self.model
    }

    /// `[periocular_model]`'s bytes (verified), when the bundle has one.
    pub fn periocular_model_bytes(&self) -> Option<&[u8]> {
        self.periocular_model.as_deref()
    }

    /// Every model file of the bundle as (file name, bytes): the model, then
    /// the periocular model when there is one.
    pub fn model_files(&self) -> Vec<(&str, &[u8])> {
        let mut v = vec![(self.manifest.model.file.as_str(), self.model.as_slice())];
        if let (Some(m), Some(b)) = (&self.manifest.periocular_model, &self.periocular_model) {
            v.push((m.file.as_str(), b.as_slice()));
        }
        v
    }

    /// The gallery's model identity: the model's sha256, or with a
    /// periocular model the sha256 of both digests (templates made by either
    /// model must not be compared with another pair's).
    pub fn identity_sha256(&self) -> String {
        match &self.manifest.periocular_model {
            Some(p) => sha256_hex(
                format!("{}+periocular:{}", self.manifest.model.sha256, p.sha256).as_bytes(),
            ),
            None => self.manifest.model.sha256.clone(),
        }
    }

    pub fn sha256(&self) -> &str {
        &self.manifest.model.sha256
    }
}

/// Names of the bundles under `models_dir/bundles`, sorted.
pub fn list(models_dir: &Path) -> Result<Vec<String>, BundleError> {
    let dir = models_dir.join("bundles");
    let rd = fs::read_dir(&dir).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BundleError::Missing(dir.clone())
        } else {
            BundleError::Io {
                path: dir.clone(),
                source,
            }
        }
    })?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.toml").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Where the bundles live: `--models`, else `$FACEGATE_MODELS`, else
/// `./models/out` when present, else the packaged location.
pub fn default_models_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FACEGATE_MODELS") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("models/out");
    if local.join("bundles").exists() {
        return local;
    }
    PathBuf::from("/usr/lib/facegate/models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trained_embedder_is_the_default_only_where_installed() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(default_embedder(d.path()), DEFAULT_EMBEDDER);
        let t = d.path().join("bundles").join(TRAINED_EMBEDDER);
        fs::create_dir_all(&t).unwrap();
        // A folder without a manifest is not a bundle.
        assert_eq!(default_embedder(d.path()), DEFAULT_EMBEDDER);
        fs::write(t.join("manifest.toml"), "schema = 1\n").unwrap();
        assert_eq!(default_embedder(d.path()), TRAINED_EMBEDDER);
    }

    const GOOD: &str = r#"
schema = 1
name = "facenet-test"
kind = "embedder"
version = "1"
[model]
file = "model.onnx"
sha256 = "8800557872b20ec2fa4eea67f5bf51d523716eebb91d6ceed7a7badf1d4e9d0f"
bytes = 10
format = "onnx"
precision = "fp32"
[input]
name = "input:0"
layout = "NHWC"
colour = "RGB"
shape = [-1, 160, 160, 3]
mean = [127.5, 127.5, 127.5]
std = [128.0, 128.0, 128.0]
[output]
name = "embeddings:0"
dim = 512
l2_normalised = true
[align]
size = 160
template = [[60.5, 75.2], [99.3, 75.0], [80.0, 97.3], [64.1, 120.0], [96.2, 119.8]]
border = "clamp"
[provenance]
package = "x"
[thresholds]
status = "uncalibrated"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.kind, Kind::Embedder);
        assert_eq!(m.output.unwrap().dim, 512);
        assert_eq!(m.input.layout, Layout::Nhwc);
        assert!(m.thresholds.is_some());
    }

    #[test]
    fn uncalibrated_thresholds_are_not_offered() {
        let m = Manifest::parse(GOOD).unwrap();
        assert!(m.calibrated_thresholds().is_none());
        let cal = GOOD.replace(
            "status = \"uncalibrated\"",
            "status = \"calibrated\"\nunmasked = 0.5\nmasked = 0.45",
        );
        let m = Manifest::parse(&cal).unwrap();
        assert_eq!(m.calibrated_thresholds().unwrap().masked, Some(0.45));
        // Calibrated before issue 15: no identification table.
        assert!(m.calibrated_thresholds().unwrap().identify().is_none());
    }

    #[test]
    fn identification_table_parses_and_is_validated() {
        let cal = |extra: &str| {
            GOOD.replace(
                "status = \"uncalibrated\"",
                &format!("status = \"calibrated\"\nunmasked = 0.5\nmasked = 0.45\n{extra}"),
            )
        };
        let m = Manifest::parse(&cal(
            "identify_far = [1e-1, 1e-2, 1e-3]\nidentify_unmasked = [0.2, 0.3, 0.4]\nidentify_masked = [0.25, 0.35, 0.45]",
        ))
        .unwrap();
        let t = m.calibrated_thresholds().unwrap().identify().unwrap();
        assert_eq!(t.far, vec![1e-1, 1e-2, 1e-3]);
        assert_eq!(t.threshold(true, 10, 1e-2).unwrap(), 0.45);
        for (extra, needle) in [
            ("identify_far = [1e-1, 1e-2]", "go together"),
            (
                "identify_far = [1e-1, 1e-2]\nidentify_unmasked = [0.2]\nidentify_masked = [0.2, 0.3]",
                "levels",
            ),
            (
                "identify_far = [1e-2, 1e-1]\nidentify_unmasked = [0.2, 0.3]\nidentify_masked = [0.2, 0.3]",
                "decrease",
            ),
            (
                "identify_far = [1e-1, 1e-2]\nidentify_unmasked = [0.3, 0.2]\nidentify_masked = [0.2, 0.3]",
                "fall",
            ),
        ] {
            let err = Manifest::parse(&cal(extra)).unwrap_err();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn rejects_bad_manifests() {
        let cases = [
            (GOOD.replace("schema = 1", "schema = 2"), "schema 2"),
            (GOOD.replace("8800557872b2", "zz00557872b2"), "64 hex"),
            (
                GOOD.replace("file = \"model.onnx\"", "file = \"../x.onnx\""),
                "plain file",
            ),
            (
                GOOD.replace("shape = [-1, 160, 160, 3]", "shape = [-1, 112, 112, 3]"),
                "does not match",
            ),
            (
                GOOD.replace("std = [128.0, 128.0, 128.0]", "std = [0.0, 1.0, 1.0]"),
                "std",
            ),
            (GOOD.replace("layout = \"NHWC\"", "layout = \"HWC\""), "HWC"),
            (GOOD.replace("dim = 512", "dim = 0"), "output.dim"),
            (GOOD.replace("bytes = 10", "bytes = 0"), "model.bytes"),
            (GOOD.replace("[output]\nname", "[outputx]\nname"), "outputx"),
            ("not toml at all [".to_string(), ""),
        ];
        for (text, needle) in cases {
            let err = Manifest::parse(&text).unwrap_err();
            assert!(
                err.contains(needle),
                "error {err:?} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
