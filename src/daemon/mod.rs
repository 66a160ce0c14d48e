//! `facegated`: the daemon. Setup ([`start`]), the accept loop, the
//! per-connection protocol handling ([`server`]), the camera thread
//! ([`hub`]), the configuration ([`config`]), the peer-credential policy
//! ([`auth`]), the limits per peer ([`limits`]) and the systemd integration
//! ([`systemd`]).

pub mod active;
pub mod auth;
pub mod config;
pub mod crops;
pub mod door;
pub mod enrol;
pub mod hub;
pub mod ident;
pub mod limits;
pub mod liveness;
pub mod reenroll;
pub mod server;
pub mod service;
pub mod systemd;
pub mod worker;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::bundle::{self, Bundle, Kind};
use crate::daemon::active::Active;
use crate::daemon::auth::{Accounts, Policy, SystemAccounts};
use crate::daemon::config::{Config, SourceKind};
use crate::engine::{Lockout, Thresholds};
use crate::protocol::DoorEvent;
use crate::source::replay::ReplaySource;
use crate::source::{FrameSource, SourceError};

use hub::{Analyzer, Hub, Opener};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::daemon::config::ConfigError),
    #[error("models: {0}")]
    Models(String),
    #[error("gallery at {path}: {message}")]
    Gallery { path: PathBuf, message: String },
    #[error("socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Open the configured frame source.
///
/// This is the one place where the daemon opens a camera.
pub fn open_source(
    cam: &crate::daemon::config::Camera,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match cam.kind {
        SourceKind::Replay => Ok(Box::new(ReplaySource::open(&cam.replay, cam.fps)?)),
        SourceKind::V4l2 => {
            let v4l2 = cam.v4l2().map_err(SourceError::Config)?;
            Ok(Box::new(crate::source::v4l2::V4l2Source::open(&v4l2)?))
        }
    }
}

fn opener_for(cam: &crate::daemon::config::Camera) -> Opener {
    let cam = cam.clone();
    Arc::new(move || open_source(&cam))
}

/// What `status` calls a source before it is open.
fn label_for(cam: &crate::daemon::config::Camera) -> String {
    match cam.kind {
        SourceKind::V4l2 => cam.device.display().to_string(),
        SourceKind::Replay => cam
            .replay
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn hub_for(cam: &crate::daemon::config::Camera) -> Arc<Hub> {
    Hub::new(
        opener_for(cam),
        label_for(cam),
        Duration::from_millis(cam.reopen_min_ms),
        Duration::from_millis(cam.reopen_max_ms),
    )
}

/// Everything the request handlers share.
pub struct Shared {
    pub cfg: ArcSwap<Config>,
    pub config_path: PathBuf,
    pub config_must_exist: bool,
    pub policy: ArcSwap<Policy>,
    /// The models and the gallery, replaced as one on SIGHUP ([`active`]).
    pub active: ArcSwap<Active>,
    /// Serialises model reloads and re-enrolments.
    pub models_lock: Mutex<()>,
    pub hub: Arc<Hub>,
    /// The optional second (IR) camera: its frames feed the IR liveness
    /// check (`[liveness]`, [`liveness`]).
    pub ir_hub: Option<Arc<Hub>>,
    pub analyzer: Analyzer,
    /// The thread every model call runs on (`worker`).
    pub inference: worker::Inference,
    pub lockout: Mutex<Lockout>,
    pub subscribers: Mutex<Vec<(u64, std::sync::mpsc::SyncSender<DoorEvent>)>>,
    /// The connections being served, under the limits per uid.
    pub conns: Mutex<limits::Table<std::os::unix::net::UnixStream>>,
    pub started: Instant,
    pub state_dir: PathBuf,
}

impl Shared {
    /// The models and gallery in use now (a request keeps the ones it
    /// started with).
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// Thresholds in use: config overrides, else the manifest's calibrated
    /// values; None when either is missing.
    pub fn thresholds(&self) -> (Option<f32>, Option<f32>) {
        let c = self.cfg.load();
        let m = self.active.load().manifest_thresholds;
        (c.thresholds.unmasked.or(m.0), c.thresholds.masked.or(m.1))
    }

    /// The periocular threshold in use (config override, else the
    /// manifest's); None when the embedder does not compare that way.
    pub fn periocular_threshold(&self) -> Option<f32> {
        let pm = self.active.load().engine.periocular?;
        Some(
            self.cfg
                .load()
                .thresholds
                .periocular
                .unwrap_or(pm.threshold),
        )
    }

    pub fn resolved_thresholds(&self) -> Option<Thresholds> {
        match self.thresholds() {
            (Some(unmasked), Some(masked)) => Some(Thresholds {
                unmasked,
                masked,
                periocular: self.periocular_threshold(),
            }),
            _ => None,
        }
    }

    /// Re-open the configured bundles and switch to them when they changed
    /// (SIGHUP). On any error the models in use stay and the error is
    /// logged.
    pub fn reload_models(&self, cfg: &Config) -> Result<bool, DaemonError> {
        let _g = server::lock(&self.models_lock);
        let cur = self.active();
        let Some(new) = active::build(cfg, &self.state_dir, Some(&cur))? else {
            log::info!("reload: the model bundles are unchanged");
            return Ok(false);
        };
        let changed = new.embedder_id != cur.embedder_id;
        self.active.store(Arc::new(new));
        let now = self.active();
        log::info!(
            "reload: now running detector {}, embedder {}",
            now.detector_name,
            now.embedder_id.name
        );
        if changed {
            let who = active::must_reenrol(&now.gallery);
            if !who.is_empty() {
                log::warn!(
                    "{} users must re-enrol with embedder {} (`facegate reenroll` when crops are kept): {}",
                    who.len(),
                    now.embedder_id.name,
                    who.join(", ")
                );
            }
        }
        log_periocular(self);
        warm_up(self);
        Ok(true)
    }

    /// Re-read the config file (SIGHUP). The socket and state dir are kept
    /// (they need a restart); the model bundles are re-opened and switched
    /// to when they changed ([`Shared::reload_models`]); everything else
    /// applies at once.
    pub fn reload(&self) {
        let new = match crate::daemon::config::load(&self.config_path, self.config_must_exist) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload: {e}; keeping the current configuration");
                return;
            }
        };
        let old = self.cfg.load_full();
        if new.daemon != old.daemon {
            log::warn!("reload: changes to [daemon] take effect after a restart");
        }
        if new.models.amx != old.models.amx {
            log::warn!("reload: models.amx takes effect after a restart");
        }
        if let Err(e) = self.reload_models(&new) {
            log::error!("reload: {e}; keeping the models in use");
        }
        // The IR camera's settings are part of `camera` but have their own hub.
        let main_only = |c: &crate::daemon::config::Camera| crate::daemon::config::Camera {
            ir: None,
            ..c.clone()
        };
        if main_only(&new.camera) != main_only(&old.camera) {
            self.hub.set_opener(
                opener_for(&new.camera),
                label_for(&new.camera),
                Duration::from_millis(new.camera.reopen_min_ms),
                Duration::from_millis(new.camera.reopen_max_ms),
            );
        }
        if new.camera.ir != old.camera.ir {
            match (&self.ir_hub, new.camera.ir.as_deref()) {
                (Some(hub), Some(ir)) => hub.set_opener(
                    opener_for(ir),
                    label_for(ir),
                    Duration::from_millis(ir.reopen_min_ms),
                    Duration::from_millis(ir.reopen_max_ms),
                ),
                _ => log::warn!(
                    "reload: adding or removing [camera.ir] takes effect after a restart"
                ),
            }
        }
        {
            let mut l = server::lock(&self.lockout);
            l.free = new.lockout.free_failures;
            l.base = Duration::from_millis(new.lockout.base_delay_ms);
            l.max = Duration::from_millis(new.lockout.max_delay_ms);
        }
        self.policy.store(Arc::new(policy_for(&new)));
        self.cfg.store(Arc::new(new));
        log::info!("configuration reloaded from {}", self.config_path.display());
    }
}

fn policy_for(cfg: &Config) -> Policy {
    Policy {
        admin_group: cfg.daemon.admin_group.clone(),
        door_group: cfg.daemon.door_group.clone(),
        accounts: Box::new(SystemAccounts),
    }
}

/// Command-line overrides of the config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub models: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// Load the config and apply overrides.
pub fn load_config(path: &Path, must_exist: bool, o: &Overrides) -> Result<Config, DaemonError> {
    let mut c = crate::daemon::config::load(path, must_exist)?;
    if let Some(m) = &o.models {
        c.models.dir = Some(m.clone());
    }
    if let Some(s) = &o.socket {
        c.daemon.socket = s.clone();
    }
    if let Some(s) = &o.state_dir {
        c.daemon.state_dir = s.clone();
    }
    c.validate()?;
    Ok(c)
}

/// What `--check-config` found besides errors.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// One line per bundle: its role, name and signature.
    pub bundles: Vec<String>,
    pub warnings: Vec<String>,
}

/// A bundle and what its signature is.
pub type SignedBundle = (Bundle, bundle::sign::Status);

/// Open the configured detector and embedder bundles as the daemon does:
/// signatures checked against `[models] trusted_keys` / `allow_unsigned`
/// (docs/SIGNING.md), then the models against their manifests. Logs each
/// bundle's signature; one not signed by a trusted key (admitted by
/// `allow_unsigned`) is a warning.
pub fn open_bundles(cfg: &Config) -> Result<(SignedBundle, SignedBundle), DaemonError> {
    let det = open_signed(cfg, "detector", &cfg.models.detector, Kind::Detector)?;
    let emb = open_signed(cfg, "embedder", &cfg.models.embedder_name(), Kind::Embedder)?;
    Ok((det, emb))
}

/// The anti-spoofing bundle `[liveness.rgb]` names, opened like the others,
/// when a service's policy runs the RGB check; None when none does.
pub fn open_antispoof(cfg: &Config) -> Result<Option<SignedBundle>, DaemonError> {
    let l = &cfg.liveness;
    if !(l.pam.rgb() || l.door.rgb()) {
        return Ok(None);
    }
    open_signed(cfg, "anti-spoofing", &l.rgb.bundle, Kind::Antispoof).map(Some)
}

fn open_signed(
    cfg: &Config,
    role: &str,
    name: &str,
    kind: Kind,
) -> Result<SignedBundle, DaemonError> {
    let dir = cfg.models.folder();
    let policy = cfg.models.trust_policy()?;
    let (b, st) = Bundle::open_named_trusted(&dir, name, &policy)
        .map_err(|e| DaemonError::Models(format!("{role}: {e}")))?;
    b.expect_kind(kind)
        .map_err(|e| DaemonError::Models(format!("{role}: {e}")))?;
    match st {
        bundle::sign::Status::Trusted(_) => log::info!("{role} bundle {}: {st}", b.name()),
        // A development machine: nothing to verify against.
        _ if policy.trusted_keys.is_empty() => log::info!(
            "{role} bundle {}: {st}; signatures not enforced (no [models] trusted_keys; docs/SIGNING.md)",
            b.name()
        ),
        _ => log::warn!(
            "{role} bundle {}: {st}, loaded because models.allow_unsigned (docs/SIGNING.md)",
            b.name()
        ),
    }
    Ok((b, st))
}

/// Extra checks for `--check-config`: groups exist, bundles verify (and
/// their signatures), thresholds are known.
pub fn check(cfg: &Config) -> Result<Checked, DaemonError> {
    let mut warn = Vec::new();
    let acc = SystemAccounts;
    for (k, g) in [
        ("daemon.socket_group", &cfg.daemon.socket_group),
        ("daemon.admin_group", &cfg.daemon.admin_group),
        ("daemon.door_group", &cfg.daemon.door_group),
    ] {
        if let Some(g) = g {
            if acc.gid_of(g).is_none() {
                return Err(DaemonError::Models(format!("{k}: no group named {g:?}")));
            }
        }
    }
    let ((det, det_st), (emb, emb_st)) = open_bundles(cfg)?;
    let spoof = open_antispoof(cfg)?;
    if let Some((b, _)) = &spoof {
        crate::face::antispoof::TractAntispoof::from_bundle(b)
            .map_err(|e| DaemonError::Models(format!("anti-spoofing: {e}")))?;
    }
    let mut bundles = Vec::new();
    let mut roles = vec![("detector", &det, det_st), ("embedder", &emb, emb_st)];
    if let Some((b, st)) = &spoof {
        roles.push(("anti-spoofing", b, *st));
    }
    for (role, b, st) in roles {
        bundles.push(format!("{role} {}: {st}", b.name()));
        if !matches!(st, bundle::sign::Status::Trusted(_)) {
            warn.push(format!(
                "{role} bundle {} is {st}: loaded only because models.allow_unsigned (never on a deployed device; docs/SIGNING.md)",
                b.name()
            ));
        }
    }
    let m = manifest_thresholds(&emb);
    if cfg.thresholds.unmasked.or(m.0).is_none() || cfg.thresholds.masked.or(m.1).is_none() {
        warn.push(format!(
            "bundle {} has no calibrated thresholds and [thresholds] unmasked/masked are not both set: verify and identify will answer an error",
            emb.name()
        ));
    }
    let table = emb
        .manifest
        .calibrated_thresholds()
        .and_then(|t| t.identify());
    if table.is_none() && cfg.identify.fixed().is_none() {
        warn.push(format!(
            "bundle {} is uncalibrated for identification and [identify] unmasked/masked are not set: identify and door mode will answer an error",
            emb.name()
        ));
    }
    // The gallery of another embedder would be retired at start (a daemon
    // holding it, or no permission to read it: not checked).
    let gpath = cfg.daemon.state_dir.join("gallery");
    if gpath.exists() {
        if let Ok(info) = crate::gallery::Store::inspect(&gpath, false) {
            let running = crate::gallery::ModelId::new(emb.name(), emb.identity_sha256());
            if info.model != running {
                warn.push(format!(
                    "the gallery {} was enrolled with embedder {} ({} users); with {} it will be retired and its users must re-enrol (`facegate reenroll` re-embeds those with kept crops; docs/MODELS_SHIPPING.md)",
                    gpath.display(),
                    info.model.name,
                    info.counts.users,
                    emb.name()
                ));
            }
        }
    }
    if cfg.camera.kind == SourceKind::V4l2 && !cfg.camera.device.exists() {
        warn.push(format!(
            "camera.device {} does not exist (the daemon retries with back-off)",
            cfg.camera.device.display()
        ));
    }
    Ok(Checked {
        bundles,
        warnings: warn,
    })
}

/// Say how masked probes are compared, and who cannot be matched that way
/// (users enrolled before periocular templates existed must re-enrol).
fn log_periocular(sh: &Shared) {
    let a = sh.active();
    match &a.engine.presence {
        Some(c) => log::info!(
            "mask presence: the embedder's classifier on the whole-face embedding (threshold {:.4}{})",
            sh.cfg
                .load()
                .thresholds
                .presence_classifier
                .unwrap_or(c.threshold),
            if sh.cfg.load().thresholds.presence_classifier.is_some() {
                ", from the config"
            } else {
                ""
            }
        ),
        None => log::info!("mask presence: lower-face skin share (the embedder has no classifier)"),
    }
    let Some(pm) = a.engine.periocular else {
        log::info!("masked probes: whole face, masked threshold");
        return;
    };
    log::info!(
        "masked probes: periocular crops (cut {} IOD below the eyes), threshold {:.4}",
        pm.cut,
        pm.threshold
    );
    let (Ok(users), Ok(templates)) = (a.gallery.users(), a.gallery.templates()) else {
        return;
    };
    let missing: Vec<&str> = users
        .iter()
        .filter(|u| {
            !templates
                .iter()
                .any(|t| t.user == u.name && t.condition == crate::gallery::Condition::Periocular)
        })
        .map(|u| u.name.as_str())
        .collect();
    if !missing.is_empty() {
        log::warn!(
            "{} of {} users have no periocular template and will not be recognised with a mask until they re-enrol: {}",
            missing.len(),
            users.len(),
            missing.join(", ")
        );
    }
}

fn manifest_thresholds(b: &Bundle) -> (Option<f32>, Option<f32>) {
    match b.manifest.calibrated_thresholds() {
        Some(t) => (t.unmasked, t.masked),
        None => (None, None),
    }
}

/// Bind the socket: from systemd (socket activation) or at `cfg.daemon.socket`,
/// replacing a stale socket file but never a live daemon's.
pub fn bind(cfg: &Config) -> Result<(UnixListener, Option<PathBuf>), DaemonError> {
    if let Some(l) = systemd::activated_listener()? {
        log::info!("using the socket passed by systemd (socket activation)");
        return Ok((l, None));
    }
    let path = cfg.daemon.socket.clone();
    let err = |message: String| DaemonError::Socket {
        path: path.clone(),
        message,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("creating its folder: {e}")))?;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(err("another facegated is already listening there".into()));
        }
        log::info!("removing stale socket {}", path.display());
        std::fs::remove_file(&path).map_err(|e| err(format!("removing stale socket: {e}")))?;
    }
    // Bind with a tight umask so the socket is never more open than asked.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&path);
    nix::sys::stat::umask(old);
    let l = bound.map_err(|e| err(e.to_string()))?;
    if let Some(g) = &cfg.daemon.socket_group {
        let gid = SystemAccounts
            .gid_of(g)
            .ok_or_else(|| err(format!("no group named {g:?}")))?;
        nix::unistd::chown(&path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| err(format!("chown to group {g}: {e}")))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(cfg.socket_mode()))
        .map_err(|e| err(format!("chmod: {e}")))?;
    Ok((l, Some(path)))
}

/// Apply `[models] amx` to tract before any model is loaded, and log which
/// matrix kernels tract will use.
pub fn apply_cpu_policy(cfg: &Config) -> Result<(), crate::cpu::CpuError> {
    let applied = crate::cpu::configure(crate::cpu::CpuPolicy {
        amx: cfg.models.amx,
    })?;
    log::info!(
        "cpu: {}{}",
        crate::cpu::kernel_report(),
        applied
            .isa_override
            .as_ref()
            .map_or(String::new(), |o| format!(
                " (TRACT_CPU_ISA edited to {o:?})"
            ))
    );
    Ok(())
}

/// Load models, open the gallery, bind the socket, start the threads.
pub fn start(
    cfg: Config,
    config_path: PathBuf,
    config_must_exist: bool,
) -> Result<(Arc<Shared>, UnixListener, Option<PathBuf>), DaemonError> {
    if std::env::var_os("LISTEN_FDS").is_none()
        && std::os::unix::net::UnixStream::connect(&cfg.daemon.socket).is_ok()
    {
        return Err(DaemonError::Socket {
            path: cfg.daemon.socket.clone(),
            message: "another facegated is already listening there".into(),
        });
    }
    let shared = open(cfg, config_path, config_must_exist)?;
    let (listener, path) = bind(&shared.cfg.load())?;
    start_cameras(&shared)?;
    door::spawn_door_loop(shared.clone())?;
    Ok((shared, listener, path))
}

/// Build the detector's plans for the input sizes decisions use — the
/// camera's frame (and its padded retry, as a frame with nobody in it
/// takes) and the tracker's and IR check's square region — so that the
/// first login after a start or a model switch does not pay for them
/// (tract plans per input size: the first decision took 223–242 ms instead
/// of ~100, docs/PERFORMANCE.md).
fn warm_up(sh: &Shared) {
    use crate::face::detect::MIN_SIDE;
    use image::{Rgb, RgbImage};
    let t = Instant::now();
    let cfg = sh.cfg.load();
    let (w, h) = (
        cfg.camera.width.max(MIN_SIDE),
        cfg.camera.height.max(MIN_SIDE),
    );
    let side = crate::face::track::TrackOptions::default().side;
    let act = sh.active();
    let grey = |w, h| RgbImage::from_pixel(w, h, Rgb([127, 127, 127]));
    let r = sh.inference.run(|| {
        act.engine.detector.detect(&grey(w, h))?;
        act.engine.detector.detect_raw(&grey(side, side))
    });
    match r {
        Ok(_) => log::info!(
            "detector ready for {w}x{h} frames and {side}x{side} regions in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => log::warn!("detector warm-up: {e}"),
    }
}

/// Say at start which decisions a photo or a screen could pass.
fn log_liveness(cfg: &Config) {
    let l = &cfg.liveness;
    for (what, p) in [("verify (PAM)", l.pam), ("door and identify", l.door)] {
        match p {
            config::LivenessPolicy::Off => log::warn!(
                "liveness for {what}: off — a photo or screen replay of an enrolled face is accepted (docs/LIVENESS.md)"
            ),
            config::LivenessPolicy::Ir => log::info!("liveness for {what}: IR check"),
            config::LivenessPolicy::Rgb => log::warn!(
                "liveness for {what}: RGB anti-spoofing model only — measured weak, it does not stop a screen replay (docs/LIVENESS.md)"
            ),
            config::LivenessPolicy::IrRgb => {
                log::info!("liveness for {what}: IR check and RGB anti-spoofing model")
            }
        }
    }
}

/// Start streaming the camera (and the IR camera, if any).
pub fn start_cameras(shared: &Shared) -> std::io::Result<()> {
    shared.hub.spawn("camera")?;
    if let Some(ir) = &shared.ir_hub {
        ir.spawn("ir-camera")?;
    }
    Ok(())
}

/// Everything but the socket and the threads: load the models, open the
/// gallery, make the camera hubs (not yet streaming). The service layer
/// runs on the result (tests/daemon_service.rs drives it without a socket).
pub fn open(
    cfg: Config,
    config_path: PathBuf,
    config_must_exist: bool,
) -> Result<Arc<Shared>, DaemonError> {
    let t0 = Instant::now();
    let mm = |e: String| DaemonError::Models(e);
    apply_cpu_policy(&cfg).map_err(|e| mm(e.to_string()))?;
    let inference = worker::Inference::new()?;
    let state_dir = cfg.daemon.state_dir.clone();
    std::fs::create_dir_all(&state_dir).map_err(|e| DaemonError::Gallery {
        path: state_dir.clone(),
        message: e.to_string(),
    })?;
    let _ = std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700));
    let active =
        active::build(&cfg, &state_dir, None)?.ok_or_else(|| mm("no models were built".into()))?;
    let embedder_name = active.embedder_id.name.clone();
    let hub = hub_for(&cfg.camera);
    let ir_hub = cfg.camera.ir.as_deref().map(|c| {
        let h = hub_for(c);
        h.keep_frames(liveness::IR_FRAMES_KEPT);
        h
    });
    log_liveness(&cfg);
    let shared = Arc::new(Shared {
        policy: ArcSwap::from_pointee(policy_for(&cfg)),
        lockout: Mutex::new(Lockout::new(
            cfg.lockout.free_failures,
            Duration::from_millis(cfg.lockout.base_delay_ms),
            Duration::from_millis(cfg.lockout.max_delay_ms),
        )),
        cfg: ArcSwap::from_pointee(cfg),
        config_path,
        config_must_exist,
        active: ArcSwap::from_pointee(active),
        models_lock: Mutex::new(()),
        hub,
        ir_hub,
        analyzer: Analyzer::default(),
        inference,
        subscribers: Mutex::new(Vec::new()),
        conns: Mutex::new(limits::Table::default()),
        started: t0,
        state_dir,
    });
    log_periocular(&shared);
    warm_up(&shared);
    let who = active::must_reenrol(&shared.active().gallery);
    if !who.is_empty() {
        log::warn!(
            "{} users have no template made with embedder {embedder_name} and must re-enrol (`facegate reenroll` when crops are kept): {}",
            who.len(),
            who.join(", ")
        );
    }
    if shared.resolved_thresholds().is_none() {
        log::warn!(
            "bundle {embedder_name} has no calibrated thresholds and [thresholds] unmasked/masked are not both configured: verify and identify will answer an error until they are"
        );
    }
    match ident::current(&shared) {
        Ok(t) => log::info!(
            "identification thresholds: unmasked {:.4}, masked {:.4} ({})",
            t.thresholds.unmasked,
            t.thresholds.masked,
            t.basis
        ),
        Err(e) => log::warn!("{e}"),
    }
    Ok(shared)
}
