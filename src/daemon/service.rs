//! The service layer: verification, identification, enrolment and
//! administration as functions over the engine, the camera and the gallery
//! ([`Shared`]), returning typed results. The socket code (`server`) reads
//! frames, checks the policy, calls these and turns the result into the one
//! wire answer with [`respond`]; tests call them without a socket
//! (tests/daemon_service.rs). Enrolment lives in [`super::enrol`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::engine::{Fused, Fusion};
use crate::gallery::{Condition, ImportMode, ImportReport, SearchOptions};
use crate::protocol::{
    DenyReason, EnrollReport, ErrorKind, IrCalibration, LivenessCheck, Response, Stages,
    StatusInfo, UserInfo, PROTOCOL_VERSION,
};

use super::hub::WaitError;
use super::liveness::Service;
use super::server::lock;
use super::Shared;

/// What a verify or identify decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Unlock {
        user: String,
        score: f32,
        /// Frames that passed the threshold.
        frames: u32,
        masked: bool,
        ms: f64,
        stages: Stages,
        /// The liveness checks that ran ([`super::liveness`]).
        liveness: Vec<LivenessCheck>,
    },
    Deny {
        reason: DenyReason,
        best_score: Option<f32>,
        /// Frames with a face looked at.
        frames: u32,
        ms: f64,
        retry_after_ms: Option<u64>,
        liveness: Vec<LivenessCheck>,
    },
}

/// Why a request could not be served (each maps to one [`ErrorKind`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    #[error("no thresholds: the embedder bundle is uncalibrated; set [thresholds] unmasked and masked in the config")]
    Uncalibrated,
    /// Identification has no threshold for this gallery (uncalibrated
    /// for identification, or too many people for the target FPIR).
    #[error("{0}")]
    Identify(String),
    /// The camera is gone (not merely slow).
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Gallery(String),
    /// Enrolment found no usable capture.
    #[error("{0}")]
    Quality(String),
    #[error("{0}")]
    BadRequest(String),
    /// The peer may not make this request.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Uncalibrated | ServiceError::Identify(_) => ErrorKind::Config,
            ServiceError::Source(_) => ErrorKind::Source,
            ServiceError::Gallery(_) => ErrorKind::Gallery,
            ServiceError::Quality(_) => ErrorKind::Quality,
            ServiceError::BadRequest(_) => ErrorKind::BadRequest,
            ServiceError::Forbidden(_) => ErrorKind::Forbidden,
            ServiceError::Internal(_) => ErrorKind::Internal,
        }
    }
}

pub(crate) fn gallery_err(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Gallery(e.to_string())
}

/// A served request's result, before it becomes a wire [`Response`].
#[derive(Debug)]
pub enum Answer {
    Decision(Decision),
    Enrolled(EnrollReport),
    Removed {
        user: String,
        templates: usize,
    },
    Users(Vec<UserInfo>),
    Status(Box<StatusInfo>),
    /// A gallery export file's bytes.
    Exported(Vec<u8>),
    Imported(ImportReport),
    Reenrolled(crate::protocol::ReenrollReport),
    IrCalibration(IrCalibration),
}

/// The one mapping from service results to wire responses.
pub fn respond(r: Result<Answer, ServiceError>) -> Response {
    match r {
        Ok(Answer::Decision(Decision::Unlock {
            user,
            score,
            frames,
            masked,
            ms,
            stages,
            liveness,
        })) => Response::Unlock {
            user,
            score,
            frames,
            masked,
            ms,
            stages,
            liveness,
        },
        Ok(Answer::Decision(Decision::Deny {
            reason,
            best_score,
            frames,
            ms,
            retry_after_ms,
            liveness,
        })) => Response::Deny {
            reason,
            best_score,
            frames,
            ms,
            retry_after_ms,
            liveness,
        },
        Ok(Answer::Enrolled(r)) => Response::Enrolled(r),
        Ok(Answer::Removed { user, templates }) => Response::Removed { user, templates },
        Ok(Answer::Users(users)) => Response::Users { users },
        Ok(Answer::Status(s)) => Response::Status(s),
        Ok(Answer::Exported(bytes)) => Response::Exported {
            data_b64: b64().encode(bytes),
        },
        Ok(Answer::Reenrolled(r)) => Response::Reenrolled(r),
        Ok(Answer::IrCalibration(c)) => Response::IrCalibration(c),
        Ok(Answer::Imported(r)) => Response::Imported {
            users_added: r.users_added,
            users_kept: r.users_kept,
            templates_added: r.templates_added,
            templates_skipped: r.templates_skipped,
        },
        Err(e) => Response::error(e.kind(), e.to_string()),
    }
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub(crate) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The gallery's best match for a probe (best template of the best user, in
/// the probe's space: whole face or periocular).
pub(crate) fn best_match(
    gallery: &crate::gallery::Gallery,
    f: &crate::engine::FaceAnalysis,
) -> Option<crate::gallery::Match> {
    let opts = SearchOptions {
        k: 1,
        space: f.space(),
        ..Default::default()
    };
    gallery
        .search(&f.embedding, &opts)
        .ok()
        .and_then(|m| m.into_iter().next())
}

pub(crate) fn budget(sh: &Shared, timeout_ms: u64) -> Duration {
    let d = &sh.cfg.load().decision;
    let t = if timeout_ms == 0 {
        d.default_timeout_ms
    } else {
        timeout_ms
    };
    Duration::from_millis(t.min(d.max_timeout_ms))
}

pub(crate) fn params(sh: &Shared) -> (u32, crate::face::presence::Params) {
    let c = sh.cfg.load();
    (
        c.decision.min_face_px,
        crate::face::presence::Params {
            skin_threshold: c
                .thresholds
                .presence
                .unwrap_or(crate::face::presence::DEFAULT_THRESHOLD),
            classifier_threshold: c.thresholds.presence_classifier,
        },
    )
}

/// One camera frame through the models, on the inference thread (faces
/// tracked from the camera's last frames when `[models] track_every` asks).
pub(crate) fn analyze(
    sh: &Shared,
    img: &image::RgbImage,
) -> Result<crate::engine::Analysis, crate::engine::EngineError> {
    let (min_face_px, presence) = params(sh);
    let act = sh.active();
    let mut a = sh.inference.run(|| {
        act.engine
            .analyze_frame(img, act.tracker.as_ref(), min_face_px, presence)
    })?;
    a.embedder_sha.clone_from(&act.embedder_id.sha256);
    Ok(a)
}

/// Is `user` in front of the camera? Fuses up to `max_frames` face frames
/// within the time budget; failures count towards the user's lockout only
/// when no frame passed.
pub fn verify(sh: &Arc<Shared>, user: &str, timeout_ms: u64) -> Result<Decision, ServiceError> {
    let t0 = Instant::now();
    let Some(thr) = sh.resolved_thresholds() else {
        return Err(ServiceError::Uncalibrated);
    };
    if let Err(left) = lock(&sh.lockout).check(user, t0) {
        return Ok(Decision::Deny {
            reason: DenyReason::LockedOut,
            best_score: None,
            frames: 0,
            ms: 0.0,
            retry_after_ms: Some(left.as_millis() as u64),
            liveness: Vec::new(),
        });
    }
    let act = sh.active();
    let snap = act.gallery.snapshot();
    let enrolled = act
        .gallery
        .store()
        .template_ids_of(user)
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    if !enrolled {
        return Ok(Decision::Deny {
            reason: DenyReason::NotEnrolled,
            best_score: None,
            frames: 0,
            ms: ms_since(t0),
            retry_after_ms: None,
            liveness: Vec::new(),
        });
    }
    let cfg = sh.cfg.load();
    let deadline = t0 + budget(sh, timeout_ms);
    let mut fusion = Fusion::new(cfg.decision.min_frames, cfg.decision.max_frames);
    let mut stages = Stages::default();
    let mut after = 0;
    let k = snap.users.len().max(1);
    let mut last_masked = false;
    loop {
        match sh
            .analyzer
            .next(&sh.hub, |img| analyze(sh, img), after, t0, deadline)
        {
            Ok((c, a)) => {
                after = c;
                stages.add(&a.stages);
                let Some(f) = &a.face else { continue };
                if a.embedder_sha != act.embedder_id.sha256 {
                    // Analysed by the engine in use before a model switch.
                    continue;
                }
                let ts = Instant::now();
                let score = act
                    .gallery
                    .search(
                        &f.embedding,
                        &SearchOptions {
                            k,
                            space: f.space(),
                            ..Default::default()
                        },
                    )
                    .ok()
                    .and_then(|m| m.into_iter().find(|m| &*m.user == user))
                    .map_or(-1.0, |m| m.score);
                stages.scan_ms += ms_since(ts);
                last_masked = f.masked;
                match fusion.push(score, thr.for_face(f)) {
                    Some(Fused::Accept { score, passed, .. }) => {
                        // The face matched: now whether it is a live one
                        // (`[liveness] pam`), on this frame.
                        let liveness = match timed_liveness(sh, Service::Pam, &a, &mut stages) {
                            Ok(checks) => checks,
                            Err(checks) => {
                                return Ok(deny_liveness(
                                    sh,
                                    Some(user),
                                    score,
                                    fusion.seen(),
                                    t0,
                                    checks,
                                ));
                            }
                        };
                        lock(&sh.lockout).success(user);
                        return Ok(Decision::Unlock {
                            user: user.to_string(),
                            score,
                            frames: passed,
                            masked: f.masked,
                            ms: ms_since(t0),
                            stages,
                            liveness,
                        });
                    }
                    Some(Fused::Reject { best, seen }) => {
                        return Ok(deny_no_match(sh, user, Some(best), seen, t0, true));
                    }
                    None => {}
                }
            }
            Err(WaitError::Timeout) => {
                if fusion.seen() == 0 {
                    return Ok(Decision::Deny {
                        reason: DenyReason::NoFace,
                        best_score: None,
                        frames: 0,
                        ms: ms_since(t0),
                        retry_after_ms: None,
                        liveness: Vec::new(),
                    });
                }
                log::debug!("verify {user}: time budget spent (last probe masked: {last_masked})");
                // Out of time with some frames passing is not evidence of an
                // impostor: only count failures where no frame passed.
                return Ok(deny_no_match(
                    sh,
                    user,
                    fusion.best(),
                    fusion.seen(),
                    t0,
                    fusion.passed() == 0,
                ));
            }
            Err(WaitError::Gone(why)) => return Err(ServiceError::Source(why)),
        }
    }
}

fn deny_no_match(
    sh: &Shared,
    user: &str,
    best: Option<f32>,
    seen: u32,
    t0: Instant,
    counts: bool,
) -> Decision {
    let delay = if counts {
        lock(&sh.lockout).failure(user, Instant::now())
    } else {
        Duration::ZERO
    };
    if !delay.is_zero() {
        log::warn!(
            "verify {user}: repeated failures, locked out for {} ms",
            delay.as_millis()
        );
    }
    Decision::Deny {
        reason: DenyReason::NoMatch,
        best_score: best,
        frames: seen,
        ms: ms_since(t0),
        retry_after_ms: (!delay.is_zero()).then_some(delay.as_millis() as u64),
        liveness: Vec::new(),
    }
}

/// The liveness checks `service` needs on the frame a decision accepts
/// ([`super::liveness::check`]), their time added to `stages` when any ran.
fn timed_liveness(
    sh: &Shared,
    service: Service,
    a: &crate::engine::Analysis,
    stages: &mut Stages,
) -> Result<Vec<LivenessCheck>, Vec<LivenessCheck>> {
    let t = Instant::now();
    let checked = super::liveness::check(sh, service, a);
    if !matches!(&checked, Ok(c) if c.is_empty()) {
        stages.liveness_ms += ms_since(t);
    }
    checked
}

/// A face that matched but failed a liveness check: denied with the
/// checks. For verify (`user`) it counts towards the user's lockout — a
/// replayed face is an attack on that account.
fn deny_liveness(
    sh: &Shared,
    user: Option<&str>,
    score: f32,
    seen: u32,
    t0: Instant,
    liveness: Vec<LivenessCheck>,
) -> Decision {
    let delay = user.map_or(Duration::ZERO, |u| {
        lock(&sh.lockout).failure(u, Instant::now())
    });
    Decision::Deny {
        reason: DenyReason::Liveness,
        best_score: Some(score),
        frames: seen,
        ms: ms_since(t0),
        retry_after_ms: (!delay.is_zero()).then_some(delay.as_millis() as u64),
        liveness,
    }
}

/// Who is in front of the camera? The first user with `min_frames` passing
/// frames, within the budget and at most `max_frames` face frames, at the
/// identification thresholds for the gallery's current size
/// ([`super::ident::current`]; refused when there are none).
pub fn identify(sh: &Arc<Shared>, timeout_ms: u64) -> Result<Decision, ServiceError> {
    let t0 = Instant::now();
    let thr = super::ident::current(sh)?.thresholds;
    let cfg = sh.cfg.load();
    let deadline = t0 + budget(sh, timeout_ms);
    let mut per_user: HashMap<String, Fusion> = HashMap::new();
    let (mut seen, mut best): (u32, Option<f32>) = (0, None);
    let mut stages = Stages::default();
    let mut after = 0;
    loop {
        match sh
            .analyzer
            .next(&sh.hub, |img| analyze(sh, img), after, t0, deadline)
        {
            Ok((c, a)) => {
                after = c;
                stages.add(&a.stages);
                let Some(f) = &a.face else { continue };
                let act = sh.active();
                if a.embedder_sha != act.embedder_id.sha256 {
                    continue;
                }
                seen += 1;
                let ts = Instant::now();
                let top = best_match(&act.gallery, f);
                stages.scan_ms += ms_since(ts);
                if let Some(m) = top {
                    best = Some(best.map_or(m.score, |b| b.max(m.score)));
                    let fu = per_user.entry(m.user.to_string()).or_insert_with(|| {
                        Fusion::new(cfg.decision.min_frames, cfg.decision.min_frames)
                    });
                    if let Some(Fused::Accept { score, passed, .. }) =
                        fu.push(m.score, thr.for_face(f))
                    {
                        let liveness = match timed_liveness(sh, Service::Door, &a, &mut stages) {
                            Ok(checks) => checks,
                            Err(checks) => {
                                return Ok(deny_liveness(sh, None, score, seen, t0, checks));
                            }
                        };
                        return Ok(Decision::Unlock {
                            user: m.user.to_string(),
                            score,
                            frames: passed,
                            masked: f.masked,
                            ms: ms_since(t0),
                            stages,
                            liveness,
                        });
                    }
                }
                if seen >= cfg.decision.max_frames {
                    return Ok(Decision::Deny {
                        reason: DenyReason::NoMatch,
                        best_score: best,
                        frames: seen,
                        ms: ms_since(t0),
                        retry_after_ms: None,
                        liveness: Vec::new(),
                    });
                }
            }
            Err(WaitError::Timeout) => {
                return Ok(Decision::Deny {
                    reason: if seen == 0 {
                        DenyReason::NoFace
                    } else {
                        DenyReason::NoMatch
                    },
                    best_score: best,
                    frames: seen,
                    ms: ms_since(t0),
                    retry_after_ms: None,
                    liveness: Vec::new(),
                })
            }
            Err(WaitError::Gone(why)) => return Err(ServiceError::Source(why)),
        }
    }
}

pub use super::enrol::enroll;

/// Remove `user` and their templates; how many templates went.
pub fn remove(sh: &Shared, user: &str) -> Result<usize, ServiceError> {
    let n = sh
        .active()
        .gallery
        .remove_user(user)
        .map(|ids| ids.len())
        .map_err(gallery_err)?;
    super::reenroll::forget_crops(sh, user);
    Ok(n)
}

/// The enrolled users with their template counts.
pub fn list(sh: &Shared) -> Result<Vec<UserInfo>, ServiceError> {
    let act = sh.active();
    let users = act.gallery.users().map_err(gallery_err)?;
    let templates = act.gallery.templates().map_err(gallery_err)?;
    let stale = super::active::must_reenrol(&act.gallery);
    let mut out: Vec<UserInfo> = users
        .into_iter()
        .map(|u| UserInfo {
            uid: u.uid,
            enabled: u.enabled,
            unmasked: 0,
            masked: 0,
            synthetic_masked: 0,
            periocular: 0,
            must_reenrol: stale.contains(&u.name),
            kept_crops: super::reenroll::has_crops(sh, &u.name),
            name: u.name,
        })
        .collect();
    for t in &templates {
        if let Some(u) = out.iter_mut().find(|u| u.name == t.user) {
            match t.condition {
                Condition::Unmasked => u.unmasked += 1,
                Condition::Masked => u.masked += 1,
                Condition::SyntheticMasked => u.synthetic_masked += 1,
                Condition::Periocular => u.periocular += 1,
            }
        }
    }
    Ok(out)
}

/// The daemon's state (open to every peer that reaches the socket).
pub fn status(sh: &Shared) -> StatusInfo {
    let (source, source_state, frames, source_reopens) = sh.hub.status();
    let act = sh.active();
    let counts = act.gallery.counts().ok();
    let (tu, tm) = sh.thresholds();
    let ident = super::ident::current(sh);
    StatusInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
        uptime_s: sh.started.elapsed().as_secs_f64(),
        source,
        source_state,
        frames,
        source_reopens,
        users: counts.map_or(0, |c| c.users),
        templates: counts.map_or(0, |c| c.templates),
        embedder: act.engine.embedder.name().to_string(),
        detector: act.detector_name.clone(),
        threshold_unmasked: tu,
        threshold_masked: tm,
        identify_unmasked: ident.as_ref().ok().map(|t| t.thresholds.unmasked),
        identify_masked: ident.as_ref().ok().map(|t| t.thresholds.masked),
        identify_state: match &ident {
            Ok(t) => t.basis.clone(),
            Err(e) => e.to_string(),
        },
        threshold_periocular: sh.periocular_threshold(),
        clients: super::server::lock(&sh.conns).len(),
        subscribers: lock(&sh.subscribers).len(),
        ir_camera: sh.ir_hub.as_ref().map(|h| {
            let (source, state, frames, reopens) = h.status();
            crate::protocol::SourceStatus {
                source,
                state,
                frames,
                reopens,
            }
        }),
        must_reenrol: super::active::must_reenrol(&act.gallery),
        liveness: {
            let l = &sh.cfg.load().liveness;
            format!(
                "verify: {}, door and identify: {}",
                l.pam.name(),
                l.door.name()
            )
        },
    }
}

fn temp_path(sh: &Shared, what: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    sh.state_dir.join(format!(
        ".{what}-{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// The gallery as an export file's bytes (docs/GALLERY.md).
pub fn export(sh: &Shared) -> Result<Vec<u8>, ServiceError> {
    let p = temp_path(sh, "export");
    let r = sh
        .active()
        .gallery
        .export(&p)
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::read(&p).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&p);
    r.map_err(ServiceError::Gallery)
}

/// Import an export file (base64, as sent): into an empty gallery, or merged.
pub fn import(sh: &Shared, data_b64: &str, merge: bool) -> Result<ImportReport, ServiceError> {
    let bytes = b64()
        .decode(data_b64.as_bytes())
        .map_err(|e| ServiceError::BadRequest(format!("data_b64: {e}")))?;
    let p = temp_path(sh, "import");
    std::fs::write(&p, bytes).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mode = if merge {
        ImportMode::Merge
    } else {
        ImportMode::IntoEmpty
    };
    let r = sh.active().gallery.import(&p, mode);
    let _ = std::fs::remove_file(&p);
    r.map_err(gallery_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_kind_and_message() {
        let r = respond(Err(ServiceError::Uncalibrated));
        let Response::Error { kind, message } = r else {
            panic!("{r:?}")
        };
        assert_eq!(kind, ErrorKind::Config);
        assert!(message.starts_with("no thresholds: the embedder bundle is uncalibrated"));
        for (e, k) in [
            (ServiceError::Source("gone".into()), ErrorKind::Source),
            (ServiceError::Identify("too many".into()), ErrorKind::Config),
            (ServiceError::Gallery("full".into()), ErrorKind::Gallery),
            (ServiceError::Quality("blurred".into()), ErrorKind::Quality),
            (
                ServiceError::BadRequest("b64".into()),
                ErrorKind::BadRequest,
            ),
            (
                ServiceError::Forbidden("uid 7".into()),
                ErrorKind::Forbidden,
            ),
            (ServiceError::Internal("oops".into()), ErrorKind::Internal),
        ] {
            let want = e.to_string();
            assert_eq!(
                respond(Err(e)),
                Response::Error {
                    kind: k,
                    message: want
                }
            );
        }
    }

    #[test]
    fn decisions_and_exports_map_to_their_responses() {
        let deny = Decision::Deny {
            reason: DenyReason::LockedOut,
            best_score: None,
            frames: 0,
            ms: 0.0,
            retry_after_ms: Some(2000),
            liveness: Vec::new(),
        };
        assert_eq!(
            respond(Ok(Answer::Decision(deny))),
            Response::Deny {
                reason: DenyReason::LockedOut,
                best_score: None,
                frames: 0,
                ms: 0.0,
                retry_after_ms: Some(2000),
                liveness: Vec::new(),
            }
        );
        let unlock = Decision::Unlock {
            user: "a".into(),
            score: 0.8,
            frames: 2,
            masked: true,
            ms: 12.0,
            stages: Stages::default(),
            liveness: vec![LivenessCheck {
                check: "ir".into(),
                passed: true,
                detail: "in place".into(),
            }],
        };
        assert!(matches!(
            respond(Ok(Answer::Decision(unlock))),
            Response::Unlock { user, frames: 2, masked: true, liveness, .. }
                if user == "a" && liveness.len() == 1 && liveness[0].passed
        ));
        assert_eq!(
            respond(Ok(Answer::Exported(b"hi".to_vec()))),
            Response::Exported {
                data_b64: "aGk=".into()
            }
        );
    }
}
