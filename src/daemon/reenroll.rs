//! Kept crops in the service (`[enroll] keep_crops`, [`super::crops`]):
//! kept at enrolment, forgotten with the user, and re-embedded by
//! `facegate reenroll` when the embedder changed (issue 16 §3).
//!
//! [`reenroll`] runs every user's kept captures through the running
//! embedder the way enrolment does (align to its template, embed, plus the
//! periocular and synthetic-masked templates it would make) and replaces
//! those users' templates in one gallery transaction: either everybody
//! with usable crops is re-enrolled, or nothing changes. Users without
//! kept crops are named in the answer; they must enrol again.

use std::path::PathBuf;

use crate::engine::{templates_for, FaceAnalysis};
use crate::face::mask::MaskStyle;
use crate::protocol::ReenrollReport;

use super::crops::{self, CropStore, KeptCrop};
use super::server::lock;
use super::service::ServiceError;
use super::Shared;

/// `<state_dir>/crops`.
fn crops_dir(sh: &Shared) -> PathBuf {
    sh.state_dir.join("crops")
}

/// `[enroll] crops_key`, else `<state_dir>/crops.key`.
fn key_path(sh: &Shared) -> PathBuf {
    sh.cfg
        .load()
        .enroll
        .crops_key
        .clone()
        .unwrap_or_else(|| sh.state_dir.join("crops.key"))
}

fn store(sh: &Shared, create_key: bool) -> Result<CropStore, crops::CropError> {
    let key = crops::load_key(&key_path(sh), create_key)?;
    CropStore::open(&crops_dir(sh), &key)
}

/// How to put a user's kept crops back as they were.
pub(crate) struct Restore {
    undo: Option<(CropStore, String, Vec<KeptCrop>)>,
}

impl Restore {
    /// Put the crops back (the enrolment they were kept for failed).
    pub(crate) fn undo(self) {
        if let Some((store, user, prev)) = self.undo {
            if let Err(e) = store.save(&user, &prev) {
                log::error!("enrol {user}: cannot restore the kept crops: {e}");
            }
        }
    }
}

/// Keep `kept` for `user` (nothing to do when empty). An error means
/// nothing was kept and the enrolment must not go on.
pub(crate) fn keep_crops(
    sh: &Shared,
    user: &str,
    kept: &[KeptCrop],
) -> Result<Restore, ServiceError> {
    if kept.is_empty() {
        return Ok(Restore { undo: None });
    }
    let fail = |e: crops::CropError| {
        ServiceError::Internal(format!(
            "[enroll] keep_crops is on but the crops cannot be kept, so nothing was enrolled: {e}"
        ))
    };
    let store = store(sh, true).map_err(fail)?;
    let prev = store.load(user).map_err(fail)?;
    let mut all = prev.clone();
    all.extend(kept.iter().cloned());
    store.save(user, &all).map_err(fail)?;
    log::info!("enrol {user}: {} captures kept (encrypted)", kept.len());
    Ok(Restore {
        undo: Some((store, user.to_string(), prev)),
    })
}

/// Delete `user`'s kept crops (no key needed). Logged, never fatal: the
/// user is already gone from the gallery, and `reenroll` ignores crops of
/// users it does not know.
pub(crate) fn forget_crops(sh: &Shared, user: &str) {
    let path = crops::file_of(&crops_dir(sh), user);
    match std::fs::remove_file(&path) {
        Ok(()) => log::info!("removed the kept crops of {user}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::error!(
            "cannot remove the kept crops of {user} ({}): {e}",
            path.display()
        ),
    }
}

/// Are crops kept for `user`?
pub(crate) fn has_crops(sh: &Shared, user: &str) -> bool {
    crops::file_of(&crops_dir(sh), user).exists()
}

/// Re-embed every user's kept crops with the running embedder and replace
/// their templates, all in one transaction.
pub fn reenroll(sh: &Shared) -> Result<ReenrollReport, ServiceError> {
    // No model switch while re-enrolling: the templates must be the gallery's.
    let _g = lock(&sh.models_lock);
    let act = sh.active();
    let users = act
        .gallery
        .users()
        .map_err(|e| ServiceError::Gallery(e.to_string()))?;
    let cfg = sh.cfg.load();
    let styles: Vec<MaskStyle> = cfg
        .enroll
        .synthetic_masks
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut report = ReenrollReport {
        embedder: act.embedder_id.name.clone(),
        users: Vec::new(),
        templates: 0,
        without_crops: Vec::new(),
        failed: Vec::new(),
    };
    let any = users.iter().any(|u| has_crops(sh, &u.name));
    let store = if any {
        Some(
            store(sh, false)
                .map_err(|e| ServiceError::Internal(format!("kept crops cannot be read: {e}")))?,
        )
    } else {
        None
    };
    let mut batch = Vec::new();
    for u in &users {
        let kept = match &store {
            Some(s) if has_crops(sh, &u.name) => match s.load(&u.name) {
                Ok(k) => k,
                Err(e) => {
                    report.failed.push(format!("{}: {e}", u.name));
                    continue;
                }
            },
            _ => Vec::new(),
        };
        if kept.is_empty() {
            report.without_crops.push(u.name.clone());
            continue;
        }
        let engine = &act.engine;
        let made = sh.inference.run(|| {
            let mut out = Vec::new();
            for (i, k) in kept.iter().enumerate() {
                let crop = crate::face::align::align(&k.image, &k.face.landmarks, &engine.align)?;
                let embedding = engine.embedder.embed(&crop)?.into_vec();
                let fa = FaceAnalysis {
                    face: k.face.clone(),
                    faces: 1,
                    masked: false,
                    skin_share: 0.0,
                    mask_probability: None,
                    embedding,
                    periocular: false,
                    crop,
                };
                let seed = cfg.enroll.seed.wrapping_add(i as u64 * 1000);
                let source = format!("{} (reenrolled)", k.source);
                out.extend(templates_for(
                    engine, &u.name, &source, &k.image, &fa, &styles, seed,
                )?);
            }
            Ok::<_, crate::engine::EngineError>(out)
        });
        match made {
            Ok(t) => {
                report.templates += t.len();
                batch.extend(t);
                report.users.push(u.name.clone());
            }
            Err(e) => report.failed.push(format!("{}: {e}", u.name)),
        }
    }
    if !report.users.is_empty() {
        act.gallery
            .replace_templates(&report.users, batch)
            .map_err(|e| ServiceError::Gallery(format!("nothing was re-enrolled: {e}")))?;
    }
    log::info!(
        "reenroll with {}: {} users ({} templates) re-embedded from kept crops; {} without kept crops must enrol again{}",
        report.embedder,
        report.users.len(),
        report.templates,
        report.without_crops.len(),
        if report.failed.is_empty() {
            String::new()
        } else {
            format!("; {} failed: {}", report.failed.len(), report.failed.join("; "))
        }
    );
    Ok(report)
}
