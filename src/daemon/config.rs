//! The daemon's configuration (TOML, default `/etc/facegate/config.toml`).
//!
//! [`parse`] is pure (text in, validated [`Config`] out); [`load`] reads a
//! file. Every section and key is optional: with no file at all the daemon
//! starts on a development machine (state in `~/.local/state/facegate`,
//! socket in `$XDG_RUNTIME_DIR/facegate/`, camera `/dev/video0`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bundle::sign::{PublicKey, TrustPolicy};

mod camera;
mod liveness;
pub use camera::{Camera, SourceKind};
pub use liveness::{IrCheck, Liveness, Policy as LivenessPolicy, RgbCheck};

/// Default config file.
pub const DEFAULT_PATH: &str = "/etc/facegate/config.toml";

/// The config format this daemon reads (the optional top-level `version`
/// key; examples/config.toml is the shipped example).
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config syntax: {0}")]
    Syntax(String),
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Daemon {
    /// Unix socket path (ignored under socket activation).
    pub socket: PathBuf,
    /// Socket file mode, octal string.
    pub socket_mode: String,
    /// Group owning the socket (None: the daemon's group).
    pub socket_group: Option<String>,
    /// Gallery and other state.
    pub state_dir: PathBuf,
    /// Group whose members may enrol/remove/list/export/import (root always may).
    pub admin_group: Option<String>,
    /// Group whose members may subscribe to door events (root always may).
    pub door_group: Option<String>,
    /// Connections served at once; more are told `busy`.
    pub max_clients: usize,
    /// A client must send each request within this long.
    pub client_timeout_ms: u64,
    /// Connections one uid may hold (root: no cap); one more closes the
    /// uid's longest-idle connection, or is told `busy` (daemon::limits).
    pub max_clients_per_uid: usize,
    /// Requests one uid may have in progress (root: no cap); more: `busy`.
    pub max_requests_per_uid: usize,
    /// While 3/4 of `max_clients` are connected, a client idle (or slow to
    /// send its request) this long loses its connection to a newcomer (at
    /// most `client_timeout_ms`).
    pub busy_client_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    /// Folder holding bundles/ (None: $FACEGATE_MODELS, ./models/out, /usr/lib/facegate/models).
    pub dir: Option<PathBuf>,
    /// Embedder bundle (None: `bundle::default_embedder` of that folder —
    /// the masked-trained `mobilefacenet-masked` when installed, else the
    /// pretrained `mobilefacenet-fp32`).
    pub embedder: Option<String>,
    pub detector: String,
    pub threads: usize,
    /// Frames whose longer side exceeds this are downscaled before detection
    /// (landmarks are scaled back; alignment uses the full frame); 0 = never.
    /// 320 makes detection ~3x cheaper on a 640x480 camera (docs/PERFORMANCE.md)
    /// at the cost of small faces: masked faces ~100 px wide in the frame are
    /// then missed ~10 % of the time (docs/ACCURACY.md).
    pub detect_max_side: u32,
    /// Detection by tracking (docs/PERFORMANCE.md, "Tracking"): between
    /// whole-frame searches, faces are looked for in small regions around
    /// where they were; the whole frame is searched at least every this many
    /// frames, and at once when a face is lost. 0 or 1: every frame is
    /// searched whole. Camera frames only (enrolment photos never).
    pub track_every: u32,
    /// Let tract use Intel AMX int8 kernels (x86_64 CPUs with AMX only;
    /// ignored elsewhere). Off: the daemon crashed inside tract's AMX kernel
    /// (issue 12, docs/AMX.md). Applied once at start, before any model is
    /// loaded; a change needs a restart.
    pub amx: bool,
    /// Public keys (`"ed25519:<base64>"`, as `models/sign pubkey` prints
    /// them) whose bundle signatures are accepted (docs/SIGNING.md).
    pub trusted_keys: Vec<String>,
    /// Also load bundles that are unsigned or signed by a key not listed (a
    /// signature that does not verify is refused all the same). Unset: true
    /// while `trusted_keys` is empty (a development machine), false as soon
    /// as a key is listed. The packaged config sets false.
    pub allow_unsigned: Option<bool>,
}

impl Models {
    /// The models folder: `dir`, else `bundle::default_models_dir`.
    pub fn folder(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(crate::bundle::default_models_dir)
    }

    /// The embedder bundle's name: `embedder`, else the folder's default.
    pub fn embedder_name(&self) -> String {
        match &self.embedder {
            Some(e) => e.clone(),
            None => crate::bundle::default_embedder(&self.folder()).to_string(),
        }
    }

    /// The signature policy bundles are opened with.
    pub fn trust_policy(&self) -> Result<TrustPolicy, ConfigError> {
        let mut keys = Vec::with_capacity(self.trusted_keys.len());
        for (i, k) in self.trusted_keys.iter().enumerate() {
            keys.push(
                k.parse::<PublicKey>()
                    .map_err(|e| ConfigError::Invalid(format!("models.trusted_keys[{i}]: {e}")))?,
            );
        }
        let allow_unsigned = self.allow_unsigned.unwrap_or(keys.is_empty());
        if !allow_unsigned && keys.is_empty() {
            return Err(ConfigError::Invalid(
                "models.allow_unsigned = false needs models.trusted_keys (no bundle could load): list the public key that signed the bundles (`models/sign pubkey`)".into(),
            ));
        }
        Ok(TrustPolicy {
            trusted_keys: keys,
            allow_unsigned,
        })
    }
}

/// Cosine thresholds; override the model manifest's calibrated values.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdCfg {
    pub unmasked: Option<f32>,
    pub masked: Option<f32>,
    /// Masked probes compared as periocular crops; applies only when the
    /// embedder's manifest calibrates periocular comparison (it sets the cut).
    pub periocular: Option<f32>,
    /// Mask presence: lower-face skin share below this = masked probe
    /// (the rule used when the embedder has no presence classifier).
    pub presence: Option<f32>,
    /// Mask presence with the embedder's classifier (`[presence]` in its
    /// manifest): probability at or above this = masked probe, replacing
    /// the manifest's threshold; in (0, 1). Ignored without a classifier.
    pub presence_classifier: Option<f32>,
}

/// Identification (`identify`, door mode; issue 15): thresholds scaled
/// with the number of enrolled people from the bundle's calibrated impostor
/// tail (`crate::ident`), or pinned here.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Identify {
    /// Target false positive identification rate per attempt of somebody
    /// not enrolled, in (0, 0.1].
    pub fpir: f64,
    /// Fixed identification thresholds (cosine), both or neither: replace
    /// the bundle's table whatever the gallery's size (needed while the
    /// bundle is uncalibrated for identification). The operator then owns
    /// the FPIR.
    pub unmasked: Option<f32>,
    pub masked: Option<f32>,
    /// With fixed thresholds: the one for masked probes compared as
    /// periocular crops (unset: such probes are not identified).
    pub periocular: Option<f32>,
}

impl Default for Identify {
    fn default() -> Self {
        Identify {
            fpir: 1e-3,
            unmasked: None,
            masked: None,
            periocular: None,
        }
    }
}

impl Identify {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(self.fpir > 0.0 && self.fpir <= crate::ident::TOP_LEVEL) {
            return bad(format!(
                "identify.fpir = {} is not in (0, {}]",
                self.fpir,
                crate::ident::TOP_LEVEL
            ));
        }
        for (k, v) in [
            ("unmasked", self.unmasked),
            ("masked", self.masked),
            ("periocular", self.periocular),
        ] {
            if let Some(v) = v.filter(|v| !(-1.0..=1.0).contains(v)) {
                return bad(format!("identify.{k} = {v} is not a cosine in [-1, 1]"));
            }
        }
        if self.unmasked.is_some() != self.masked.is_some() {
            return bad("identify.unmasked and identify.masked go together".into());
        }
        Ok(())
    }

    /// The pinned thresholds, when both are set.
    pub fn fixed(&self) -> Option<crate::engine::Thresholds> {
        Some(crate::engine::Thresholds {
            unmasked: self.unmasked?,
            masked: self.masked?,
            periocular: self.periocular,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Decision {
    /// Unlock when `min_frames` of at most `max_frames` face frames pass.
    pub min_frames: u32,
    pub max_frames: u32,
    /// Default and largest time budget of a verify/identify request.
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Smallest face (box width, pixels) considered.
    pub min_face_px: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Door {
    /// One event per arrival: a user is announced again only after not being
    /// seen for this long.
    pub cooldown_ms: u64,
    /// Door recognition runs only while someone subscribes, unless this is set.
    pub always: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Enroll {
    /// Good frames needed from the camera.
    pub frames: u32,
    pub min_face_px: u32,
    /// Variance of the Laplacian of the aligned crop (grey levels²).
    pub min_sharpness: f32,
    /// |yaw| estimate from the landmarks, 0 = frontal, 1 = profile.
    pub max_yaw: f32,
    /// Synthetic masks rendered per unmasked template (mask styles).
    /// Default none: with them, a masked impostor is compared with masked
    /// templates too, and at the thresholds calibrated for unmasked
    /// enrolment the false accepts of masked probes rise about 100-fold
    /// (docs/ACCURACY.md, "Enrolment strategies": FAR 6.6e-5 → 6.5e-3).
    /// Enable only with thresholds calibrated for that enrolment.
    pub synthetic_masks: Vec<String>,
    pub seed: u64,
    /// Keep each accepted capture's face neighbourhood, encrypted at rest,
    /// so that `facegate reenroll` can re-embed every user when the
    /// embedder changes (docs/MODELS_SHIPPING.md). Off: a new embedder
    /// means everyone enrols again.
    pub keep_crops: bool,
    /// The 32-byte key the kept crops are encrypted with: made on first use
    /// (mode 0600, owned by the daemon's user); refused when group or others
    /// can read it. Unset: `<state_dir>/crops.key`.
    pub crops_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Lockout {
    /// Failures allowed before delays start.
    pub free_failures: u32,
    /// Delay after the first counted failure; doubles each time.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The file's format version (absent: the current one).
    pub version: Option<u32>,
    pub daemon: Daemon,
    pub models: Models,
    pub camera: Camera,
    pub thresholds: ThresholdCfg,
    pub identify: Identify,
    pub decision: Decision,
    pub door: Door,
    pub enroll: Enroll,
    pub lockout: Lockout,
    /// Presentation-attack checks per service (issue 15 §3).
    pub liveness: Liveness,
}

fn dev_machine() -> bool {
    !nix::unistd::geteuid().is_root()
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

impl Default for Daemon {
    fn default() -> Self {
        // Under systemd, RuntimeDirectory= and StateDirectory= say where.
        let runtime = std::env::var_os("RUNTIME_DIRECTORY").map(PathBuf::from);
        let state = std::env::var_os("STATE_DIRECTORY").map(PathBuf::from);
        let socket = match runtime {
            Some(r) => r.join("facegate.sock"),
            None => crate::protocol::default_socket_path(),
        };
        let state_dir = state.unwrap_or_else(|| {
            if dev_machine() {
                std::env::var_os("XDG_STATE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| home().map(|h| h.join(".local/state")))
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join("facegate")
            } else {
                PathBuf::from("/var/lib/facegate")
            }
        });
        Daemon {
            socket,
            socket_mode: "0660".into(),
            socket_group: None,
            state_dir,
            admin_group: None,
            door_group: None,
            max_clients: 64,
            client_timeout_ms: 5000,
            max_clients_per_uid: 8,
            max_requests_per_uid: 4,
            busy_client_timeout_ms: 1000,
        }
    }
}

impl Default for Models {
    fn default() -> Self {
        Models {
            dir: None,
            embedder: None,
            detector: crate::bundle::DEFAULT_DETECTOR.into(),
            threads: 1,
            detect_max_side: 1280,
            track_every: 10,
            amx: false,
            trusted_keys: Vec::new(),
            allow_unsigned: None,
        }
    }
}

impl Default for Decision {
    fn default() -> Self {
        Decision {
            min_frames: 2,
            max_frames: 5,
            default_timeout_ms: 4000,
            max_timeout_ms: 30_000,
            min_face_px: 40,
        }
    }
}

impl Default for Door {
    fn default() -> Self {
        Door {
            cooldown_ms: 10_000,
            always: false,
        }
    }
}

impl Default for Enroll {
    fn default() -> Self {
        Enroll {
            frames: 5,
            min_face_px: 60,
            min_sharpness: 20.0,
            max_yaw: 0.6,
            synthetic_masks: Vec::new(),
            seed: 1,
            keep_crops: false,
            crops_key: None,
        }
    }
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            free_failures: 3,
            base_delay_ms: 2000,
            max_delay_ms: 300_000,
        }
    }
}

impl Config {
    /// The socket mode as a number.
    pub fn socket_mode(&self) -> u32 {
        u32::from_str_radix(&self.daemon.socket_mode, 8).unwrap_or(0o660)
    }

    /// Check values; every message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some(v) = self.version.filter(|v| *v != CONFIG_VERSION) {
            return bad(format!(
                "version {v} is not supported (this facegated reads version {CONFIG_VERSION})"
            ));
        }
        let d = &self.daemon;
        match u32::from_str_radix(&d.socket_mode, 8) {
            Ok(m) if m <= 0o777 && m & 0o002 == 0 => {}
            Ok(_) => {
                return bad(format!(
                "daemon.socket_mode {:?} must be an octal mode without world write (e.g. \"0660\")",
                d.socket_mode
            ))
            }
            Err(_) => {
                return bad(format!(
                    "daemon.socket_mode {:?} is not an octal mode like \"0660\"",
                    d.socket_mode
                ))
            }
        }
        if d.socket.as_os_str().is_empty() || d.socket.as_os_str().len() > 100 {
            return bad("daemon.socket must be a path of 1..=100 bytes".into());
        }
        if !(1..=4096).contains(&d.max_clients) {
            return bad(format!(
                "daemon.max_clients {} is not in 1..=4096",
                d.max_clients
            ));
        }
        if !(100..=600_000).contains(&d.client_timeout_ms) {
            return bad(format!(
                "daemon.client_timeout_ms {} is not in 100..=600000",
                d.client_timeout_ms
            ));
        }
        for (k, v) in [
            ("max_clients_per_uid", d.max_clients_per_uid),
            ("max_requests_per_uid", d.max_requests_per_uid),
        ] {
            if !(1..=4096).contains(&v) {
                return bad(format!("daemon.{k} {v} is not in 1..=4096"));
            }
        }
        if !(10..=600_000).contains(&d.busy_client_timeout_ms) {
            return bad(format!(
                "daemon.busy_client_timeout_ms {} is not in 10..=600000",
                d.busy_client_timeout_ms
            ));
        }
        if !(1..=64).contains(&self.models.threads) {
            return bad(format!(
                "models.threads {} is not in 1..=64",
                self.models.threads
            ));
        }
        let m = self.models.detect_max_side;
        if m != 0 && !(crate::face::detect::MIN_SIDE..=8192).contains(&m) {
            return bad(format!(
                "models.detect_max_side {m} is not 0 (never downscale) or in {}..=8192",
                crate::face::detect::MIN_SIDE
            ));
        }
        if self.models.track_every > 10_000 {
            return bad(format!(
                "models.track_every {} is not in 0..=10000 (0: no tracking)",
                self.models.track_every
            ));
        }
        self.models.trust_policy()?;
        self.camera.validate("camera")?;
        if let Some(ir) = &self.camera.ir {
            ir.validate("camera.ir")?;
            if ir.ir.is_some() {
                return bad("camera.ir cannot have its own [camera.ir.ir]".into());
            }
            if ir.kind == SourceKind::V4l2
                && self.camera.kind == SourceKind::V4l2
                && ir.device == self.camera.device
            {
                return bad(format!(
                    "camera.ir.device {} is the main camera's device",
                    ir.device.display()
                ));
            }
        }
        let t = &self.thresholds;
        for (k, v) in [
            ("unmasked", t.unmasked),
            ("masked", t.masked),
            ("periocular", t.periocular),
        ] {
            if let Some(v) = v {
                if !(-1.0..=1.0).contains(&v) {
                    return bad(format!("thresholds.{k} = {v} is not a cosine in [-1, 1]"));
                }
            }
        }
        if let Some(p) = t.presence {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("thresholds.presence = {p} is not in [0, 1]"));
            }
        }
        if let Some(p) = t.presence_classifier {
            if !(p > 0.0 && p < 1.0) {
                return bad(format!(
                    "thresholds.presence_classifier = {p} is not a probability in (0, 1)"
                ));
            }
        }
        self.identify.validate()?;
        let dc = &self.decision;
        if dc.min_frames == 0 || dc.min_frames > dc.max_frames || dc.max_frames > 100 {
            return bad(format!(
                "decision: need 1 <= min_frames ({}) <= max_frames ({}) <= 100",
                dc.min_frames, dc.max_frames
            ));
        }
        if dc.default_timeout_ms == 0 || dc.default_timeout_ms > dc.max_timeout_ms {
            return bad("decision: need 0 < default_timeout_ms <= max_timeout_ms".into());
        }
        let e = &self.enroll;
        if !(1..=50).contains(&e.frames) {
            return bad(format!("enroll.frames {} is not in 1..=50", e.frames));
        }
        if !(0.0..=1.0).contains(&e.max_yaw) {
            return bad(format!("enroll.max_yaw {} is not in [0, 1]", e.max_yaw));
        }
        for s in &e.synthetic_masks {
            if let Err(err) = s.parse::<crate::face::mask::MaskStyle>() {
                return bad(format!("enroll.synthetic_masks: {err}"));
            }
        }
        let l = &self.lockout;
        if l.base_delay_ms > l.max_delay_ms {
            return bad("lockout.base_delay_ms must be <= lockout.max_delay_ms".into());
        }
        self.liveness.validate(self.camera.ir.is_some())?;
        Ok(())
    }
}

/// Parse and validate config text. Pure.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let c: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    c.validate()?;
    Ok(c)
}

/// Load `path`; when `path` is the default and does not exist, the defaults.
pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            log::info!("no config at {}: using defaults", path.display());
            parse("")
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{PixelFormat, V4l2Config};

    #[test]
    fn empty_config_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.camera.kind, SourceKind::V4l2);
        assert_eq!(c.camera.v4l2().unwrap(), V4l2Config::default());
        assert_eq!(c.socket_mode(), 0o660);
        assert_eq!(c.decision.min_frames, 2);
        assert_eq!(c.lockout.free_failures, 3);
        assert!(c.thresholds.unmasked.is_none());
        assert!(c.models.embedder.is_none(), "the folder's default embedder");
        let d = tempfile::tempdir().unwrap();
        let mut m = c.models.clone();
        m.dir = Some(d.path().to_path_buf());
        assert_eq!(m.embedder_name(), crate::bundle::DEFAULT_EMBEDDER);
        let t = d
            .path()
            .join("bundles")
            .join(crate::bundle::TRAINED_EMBEDDER);
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("manifest.toml"), "").unwrap();
        assert_eq!(m.embedder_name(), crate::bundle::TRAINED_EMBEDDER);
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
[daemon]
socket = "/run/facegate/facegate.sock"
socket_mode = "0660"
socket_group = "facegate"
state_dir = "/var/lib/facegate"
admin_group = "wheel"
door_group = "door"
max_clients = 32
max_clients_per_uid = 4
max_requests_per_uid = 2
busy_client_timeout_ms = 500
[models]
embedder = "facenet-fp32"
threads = 2
detect_max_side = 320
amx = true
[camera]
kind = "replay"
replay = ["/tmp/frames"]
fps = 5
format = "yuyv"
[thresholds]
unmasked = 0.6
masked = 0.5
[decision]
min_frames = 1
max_frames = 3
[enroll]
synthetic_masks = ["surgical"]
"#,
        )
        .unwrap();
        assert_eq!(c.daemon.admin_group.as_deref(), Some("wheel"));
        assert_eq!(
            (
                c.daemon.max_clients_per_uid,
                c.daemon.max_requests_per_uid,
                c.daemon.busy_client_timeout_ms
            ),
            (4, 2, 500)
        );
        assert_eq!(c.camera.kind, SourceKind::Replay);
        assert_eq!(c.camera.v4l2().unwrap().format, PixelFormat::Yuyv);
        assert_eq!(c.thresholds.masked, Some(0.5));
        assert_eq!(c.models.embedder_name(), "facenet-fp32");
        assert_eq!(c.models.threads, 2);
        assert_eq!(c.models.detect_max_side, 320);
        assert!(c.models.amx);
        assert!(!parse("").unwrap().models.amx, "AMX is off by default");
        assert_eq!(c.camera.ir, None);
    }

    #[test]
    fn listing_a_trusted_key_requires_signatures_unless_allowed() {
        let key = crate::bundle::sign::public_key(&[3; 32]);
        let dev = parse("").unwrap().models.trust_policy().unwrap();
        assert!(dev.allow_unsigned && dev.trusted_keys.is_empty());
        let c = parse(&format!("[models]\ntrusted_keys = [\"{key}\"]\n")).unwrap();
        let p = c.models.trust_policy().unwrap();
        assert_eq!(p.trusted_keys, vec![key]);
        assert!(!p.allow_unsigned, "a listed key turns enforcement on");
        let c = parse(&format!(
            "[models]\ntrusted_keys = [\"{key}\"]\nallow_unsigned = true\n"
        ))
        .unwrap();
        assert!(c.models.trust_policy().unwrap().allow_unsigned);
    }

    #[test]
    fn identify_section() {
        let d = parse("").unwrap().identify;
        assert_eq!((d.fpir, d.fixed()), (1e-3, None));
        let c = parse("[identify]\nfpir = 1e-2\nunmasked = 0.7\nmasked = 0.65\n").unwrap();
        assert_eq!(c.identify.fpir, 1e-2);
        assert_eq!(
            c.identify.fixed(),
            Some(crate::engine::Thresholds {
                unmasked: 0.7,
                masked: 0.65,
                periocular: None,
            })
        );
        let msg = |t: &str| parse(t).unwrap_err().to_string();
        assert!(msg("[identify]\nfpir = 0.5").contains("identify.fpir"));
        assert!(msg("[identify]\nfpir = 0.0").contains("identify.fpir"));
        assert!(msg("[identify]\nunmasked = 0.7").contains("go together"));
        assert!(msg("[identify]\nunmasked = 1.7\nmasked = 0.6").contains("identify.unmasked"));
    }

    #[test]
    fn optional_ir_camera() {
        let c = parse(
            "[camera]\ndevice = \"/dev/video0\"\n[camera.ir]\ndevice = \"/dev/video2\"\nformat = \"grey\"\nwidth = 340\nheight = 340\n",
        )
        .unwrap();
        let ir = c.camera.ir.as_deref().unwrap();
        assert_eq!(ir.device, PathBuf::from("/dev/video2"));
        assert_eq!(ir.v4l2().unwrap().format, PixelFormat::Grey);
        assert_eq!((ir.width, ir.height), (340, 340));
        // Unset keys take the camera defaults, not the main camera's values.
        assert_eq!(ir.fps, Camera::default().fps);
        assert!(ir.ir.is_none());
    }

    #[test]
    fn mistakes_get_clear_messages() {
        let msg = |t: &str| parse(t).unwrap_err().to_string();
        assert!(msg("[daemon]\nsocket_mode = \"0666\"").contains("world write"));
        assert!(msg("[daemon]\nsocket_mode = \"rw\"").contains("octal"));
        assert!(msg("[camera]\nkind = \"replay\"").contains("camera.replay"));
        assert!(msg("[camera]\nformat = \"h264\"").contains("camera.format"));
        assert!(msg("[models]\ndetect_max_side = 8").contains("models.detect_max_side"));
        assert!(msg("[models]\ntrack_every = 20000").contains("models.track_every"));
        assert_eq!(parse("").unwrap().models.track_every, 10);
        assert_eq!(
            parse("[models]\ntrack_every = 0")
                .unwrap()
                .models
                .track_every,
            0
        );
        assert!(msg("[camera.ir]\nformat = \"h264\"").contains("camera.ir.format"));
        assert!(msg("[camera.ir]\nkind = \"replay\"").contains("camera.ir.replay"));
        assert!(msg("[camera.ir]\ndevice = \"/dev/video0\"").contains("main camera"));
        assert!(msg("[camera.ir.ir]\ndevice = \"/dev/video4\"").contains("camera.ir"));
        assert_eq!(
            parse("[models]\ndetect_max_side = 0")
                .unwrap()
                .models
                .detect_max_side,
            0
        );
        assert!(msg("[thresholds]\nmasked = 1.5").contains("thresholds.masked"));
        assert!(msg("[thresholds]\nperiocular = -2").contains("thresholds.periocular"));
        for bad in ["0", "1", "1.5", "-0.2", "nan"] {
            assert!(
                msg(&format!("[thresholds]\npresence_classifier = {bad}"))
                    .contains("thresholds.presence_classifier"),
                "{bad}"
            );
        }
        assert_eq!(
            parse("[thresholds]\npresence_classifier = 0.7")
                .unwrap()
                .thresholds
                .presence_classifier,
            Some(0.7)
        );
        assert!(msg("[decision]\nmin_frames = 4\nmax_frames = 2").contains("min_frames"));
        assert!(msg("[enroll]\nsynthetic_masks = [\"party-hat\"]").contains("synthetic_masks"));
        assert!(msg("[models]\ntrusted_keys = [\"AAAA\"]").contains("models.trusted_keys[0]"));
        assert!(msg("[models]\nallow_unsigned = false").contains("needs models.trusted_keys"));
        assert!(msg("[daemon]\nmax_clients_per_uid = 0").contains("daemon.max_clients_per_uid"));
        assert!(msg("[daemon]\nmax_requests_per_uid = 0").contains("daemon.max_requests_per_uid"));
        assert!(
            msg("[daemon]\nbusy_client_timeout_ms = 5").contains("daemon.busy_client_timeout_ms")
        );
        assert!(msg("[camra]\nfps = 3").contains("unknown field"));
        assert!(msg("[camera]\nfps = \"fast\"").contains("syntax"));
    }
}
