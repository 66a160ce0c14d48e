//! The models in use and the gallery they compare against, swapped as one
//! ([`Active`]) at start and on SIGHUP (issue 16 §3).
//!
//! A reload re-opens the configured bundles as at start (signatures per
//! `[models]`, models against manifests) and builds a new engine while the
//! old one keeps serving; only a complete new [`Active`] replaces it, so a
//! bundle that fails to open changes nothing but a logged error.
//!
//! A gallery holds templates of one embedder (its [`ModelId`]). When the
//! embedder's identity changes, templates cannot be compared, so
//! [`open_gallery`] retires the gallery (renamed to
//! `gallery.retired-<model>-<sha12>`, kept whole for a rollback) and
//! starts a new one holding the same users without templates: they are
//! reported as having to re-enrol ([`must_reenrol`]) until they enrol again
//! or `facegate reenroll` re-embeds their kept crops.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::{self, Bundle};
use crate::daemon::config::Config;
use crate::engine::{Engine, PeriocularMode};
use crate::face::antispoof::TractAntispoof;
use crate::face::detect::{DetectorOptions, TractDetector};
use crate::face::embed::{Embedder, EmbedderOptions, TractEmbedder};
use crate::face::track::{TrackOptions, Tracker};
use crate::gallery::{Condition, Gallery, ModelId, OpenMode, Store, StoreOptions, User};

use super::DaemonError;

/// The models and the gallery requests run on.
pub struct Active {
    pub engine: Engine,
    /// The embedder manifest's calibrated 1:1 thresholds.
    pub manifest_thresholds: (Option<f32>, Option<f32>),
    /// The manifest's identification table (issue 15), if calibrated.
    pub manifest_identify: Option<crate::ident::IdentTable>,
    pub gallery: Arc<Gallery>,
    pub detector_name: String,
    pub embedder_id: ModelId,
    /// What this was built from (bundle manifests and engine options): a
    /// reload that finds the same builds nothing.
    pub fingerprint: String,
    /// Follows the camera's faces between whole-frame searches (None:
    /// `[models] track_every` 0 or 1). Fresh with every build, so a model
    /// switch starts with a search.
    pub tracker: Option<Tracker>,
    /// The RGB anti-spoofing model, loaded only when a `[liveness]` policy
    /// runs it (docs/LIVENESS.md).
    pub antispoof: Option<TractAntispoof>,
}

/// What distinguishes one build of the models from another.
fn fingerprint(cfg: &Config, det: &Bundle, emb: &Bundle, spoof: Option<&Bundle>) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        det.dir.display(),
        bundle::sha256_hex(det.manifest_bytes()),
        emb.dir.display(),
        bundle::sha256_hex(emb.manifest_bytes()),
        cfg.models.threads,
        cfg.models.detect_max_side,
        cfg.models.track_every,
        spoof.map_or("-".into(), |b| format!(
            "{}:{}",
            b.dir.display(),
            bundle::sha256_hex(b.manifest_bytes())
        ))
    )
}

/// Open the configured bundles and build an engine; reuse `current`'s
/// gallery when the embedder's identity is the same, else open (and if need
/// be migrate) the one in the state dir. `None` when `current` already runs
/// exactly these bundles.
pub fn build(
    cfg: &Config,
    state_dir: &Path,
    current: Option<&Active>,
) -> Result<Option<Active>, DaemonError> {
    let mm = |e: String| DaemonError::Models(e);
    let ((det_b, _), (emb_b, _)) = super::open_bundles(cfg)?;
    let spoof_b = super::open_antispoof(cfg)?.map(|(b, _)| b);
    let fp = fingerprint(cfg, &det_b, &emb_b, spoof_b.as_ref());
    if current.is_some_and(|c| c.fingerprint == fp) {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    let detector = TractDetector::from_bundle(
        &det_b,
        &DetectorOptions {
            threads: cfg.models.threads,
            max_side: (cfg.models.detect_max_side > 0).then_some(cfg.models.detect_max_side),
            pad_max_side: Some(crate::face::detect::CAMERA_PAD_MAX_SIDE),
            ..Default::default()
        },
    )
    .map_err(|e| mm(e.to_string()))?;
    let emb_opts = EmbedderOptions {
        max_batch: 1,
        threads: cfg.models.threads,
        ..Default::default()
    };
    let embedder = TractEmbedder::from_bundle(&emb_b, &emb_opts).map_err(|e| mm(e.to_string()))?;
    let periocular_embedder =
        TractEmbedder::periocular_from_bundle(&emb_b, &emb_opts).map_err(|e| mm(e.to_string()))?;
    let antispoof = spoof_b
        .as_ref()
        .map(TractAntispoof::from_bundle)
        .transpose()
        .map_err(|e| mm(format!("anti-spoofing: {e}")))?;
    let align = emb_b
        .manifest
        .align
        .clone()
        .ok_or_else(|| mm("embedder bundle has no [align] section".into()))?;
    log::info!(
        "models loaded in {:.0} ms: detector {}, embedder {} ({}-d)",
        t0.elapsed().as_secs_f64() * 1e3,
        det_b.name(),
        embedder.name(),
        embedder.dim()
    );
    let id = ModelId::new(embedder.name(), emb_b.identity_sha256());
    let gallery = match current {
        Some(c) if c.embedder_id == id => c.gallery.clone(),
        Some(c) => Arc::new(open_gallery(
            state_dir,
            embedder.dim(),
            &id,
            Some(&c.gallery),
        )?),
        None => Arc::new(open_gallery(state_dir, embedder.dim(), &id, None)?),
    };
    let manifest_thresholds = match emb_b.manifest.calibrated_thresholds() {
        Some(t) => (t.unmasked, t.masked),
        None => (None, None),
    };
    Ok(Some(Active {
        manifest_identify: emb_b
            .manifest
            .calibrated_thresholds()
            .and_then(|t| t.identify()),
        engine: Engine {
            detector: Box::new(detector),
            embedder: Box::new(embedder),
            periocular_embedder: periocular_embedder
                .map(|e| Box::new(e) as Box<dyn crate::face::embed::Embedder>),
            align,
            periocular: PeriocularMode::from_thresholds(emb_b.manifest.thresholds.as_ref()),
            presence: crate::face::presence::Classifier::from_manifest(&emb_b.manifest),
        },
        manifest_thresholds,
        gallery,
        detector_name: det_b.name().to_string(),
        embedder_id: id,
        fingerprint: fp,
        antispoof,
        tracker: (cfg.models.track_every > 1).then(|| {
            // A slow camera's frames are far apart: a track lives for three
            // of them (a lost face is searched for on the same frame anyway).
            let frame = std::time::Duration::from_secs_f64(1.0 / cfg.camera.fps.max(1) as f64);
            let d = TrackOptions::default();
            Tracker::new(TrackOptions {
                every: cfg.models.track_every,
                max_age: d.max_age.max(3 * frame),
                ..d
            })
        }),
    }))
}

fn gerr(path: &Path) -> impl Fn(String) -> DaemonError + '_ {
    move |message| DaemonError::Gallery {
        path: path.to_path_buf(),
        message,
    }
}

fn is_gallery(dir: &Path) -> bool {
    dir.join("conf").exists() || dir.join("db").exists()
}

/// A free name for the gallery of `model` once retired.
fn retired_path(state_dir: &Path, model: &ModelId) -> PathBuf {
    let safe: String = model
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let sha: String = model.sha256.chars().take(12).collect();
    let base = format!("gallery.retired-{safe}-{sha}");
    let mut p = state_dir.join(&base);
    let mut n = 1;
    while p.exists() {
        n += 1;
        p = state_dir.join(format!("{base}.{n}"));
    }
    p
}

fn sync_dir(dir: &Path) -> Result<(), DaemonError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| gerr(dir)(e.to_string()))
}

/// Open `<state_dir>/gallery` for the embedder `model`. A gallery made with
/// another embedder is retired and replaced by one with the same users and
/// no templates. `live`: that gallery, when this process has it open (a
/// reload), so its users are read from it rather than by opening it again.
///
/// Crash-safe: the new gallery is made in `.gallery-new` and renamed into
/// place after the old one was renamed away; a start that finds
/// `.gallery-new` and no `gallery` finishes the rename.
pub fn open_gallery(
    state_dir: &Path,
    dim: usize,
    model: &ModelId,
    live: Option<&Gallery>,
) -> Result<Gallery, DaemonError> {
    let path = state_dir.join("gallery");
    let fresh = state_dir.join(".gallery-new");
    let err = gerr(&path);
    if !is_gallery(&path) && is_gallery(&fresh) {
        log::warn!(
            "finishing an interrupted gallery migration: {} → {}",
            fresh.display(),
            path.display()
        );
        fs::rename(&fresh, &path).map_err(|e| err(e.to_string()))?;
        sync_dir(state_dir)?;
    }
    if fresh.exists() {
        fs::remove_dir_all(&fresh)
            .map_err(|e| err(format!("removing {}: {e}", fresh.display())))?;
    }
    let opts = StoreOptions::new(dim, model.clone());
    if !is_gallery(&path) {
        return Gallery::open(&path, &opts).map_err(|e| err(e.to_string()));
    }
    let (stored, users): (ModelId, Vec<User>) = match live {
        Some(g) if g.store().path() == path => (
            g.store().model().clone(),
            g.users().map_err(|e| err(e.to_string()))?,
        ),
        _ => {
            let info = Store::inspect(&path, false).map_err(|e| err(e.to_string()))?;
            if info.model == *model && info.dim == dim {
                return Gallery::open(&path, &opts).map_err(|e| err(e.to_string()));
            }
            let mut o = StoreOptions::new(info.dim, info.model.clone());
            o.mode = OpenMode::Open;
            let old = Store::open(&path, &o).map_err(|e| err(e.to_string()))?;
            let users = old.users().map_err(|e| err(e.to_string()))?;
            (info.model, users)
        }
    };
    if stored == *model {
        return Gallery::open(&path, &opts).map_err(|e| err(e.to_string()));
    }
    // The new gallery, complete, before anything is renamed.
    {
        let mut o = opts.clone();
        o.mode = OpenMode::Create;
        let g = Gallery::open(&fresh, &o).map_err(|e| gerr(&fresh)(e.to_string()))?;
        for u in &users {
            g.add_user(&u.name, u.uid)
                .and_then(|_| match u.enabled {
                    true => Ok(()),
                    false => g.set_enabled(&u.name, false).map(|_| ()),
                })
                .map_err(|e| gerr(&fresh)(e.to_string()))?;
        }
    }
    let retired = retired_path(state_dir, &stored);
    fs::rename(&path, &retired).map_err(|e| err(format!("retiring it: {e}")))?;
    fs::rename(&fresh, &path).map_err(|e| err(e.to_string()))?;
    sync_dir(state_dir)?;
    log::warn!(
        "the embedder changed from {} ({}) to {} ({}): templates cannot be compared across embedders; the old gallery is kept as {}, and its {} users must re-enrol (`facegate reenroll` re-embeds those with kept crops)",
        stored.name,
        stored.sha256.chars().take(12).collect::<String>(),
        model.name,
        model.sha256.chars().take(12).collect::<String>(),
        retired.display(),
        users.len()
    );
    Gallery::open(&path, &opts).map_err(|e| err(e.to_string()))
}

/// Users with no whole-face template of the running embedder: they cannot
/// be recognised until they enrol again (or `reenroll` runs).
pub fn must_reenrol(g: &Gallery) -> Vec<String> {
    let (Ok(users), Ok(templates)) = (g.users(), g.templates()) else {
        return Vec::new();
    };
    users
        .into_iter()
        .filter(|u| {
            !templates
                .iter()
                .any(|t| t.user == u.name && t.condition != Condition::Periocular)
        })
        .map(|u| u.name)
        .collect()
}
