//! Serving the socket: one thread per connection (at most
//! `daemon.max_clients`; more are told `busy`), peer credentials checked on
//! every request, every read and write with a timeout, and the request
//! handlers. Nothing a client sends can panic the daemon: handlers run under
//! `catch_unwind` and answer `internal` if they ever do.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::daemon::auth::{peer_of, Action, Peer};
use crate::engine::{quality, templates_for, Fused, Fusion, QualityLimits};
use crate::face::mask::MaskStyle;
use crate::gallery::{Condition, ImportMode, SearchOptions};
use crate::protocol::{
    parse_request, read_frame_bytes, write_frame, DenyReason, DoorEvent, EnrollReport,
    EnrollSource, ErrorKind, FrameError, Request, Response, Stages, StatusInfo, UserInfo,
    MAX_ADMIN_REQUEST, MAX_REQUEST, PROTOCOL_VERSION,
};

use super::hub::WaitError;
use super::Shared;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The gallery's best match for a probe (best template of the best user).
fn best_match(sh: &Shared, embedding: &[f32]) -> Option<crate::gallery::Match> {
    let opts = SearchOptions {
        k: 1,
        ..Default::default()
    };
    sh.gallery
        .search(embedding, &opts)
        .ok()
        .and_then(|m| m.into_iter().next())
}

struct ActiveGuard(Arc<Shared>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stack of a client thread (no inference runs there).
pub const CLIENT_STACK: usize = 512 << 10;

/// Accept connections forever.
pub fn serve(shared: Arc<Shared>, listener: UnixListener) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let max = shared.cfg.load().daemon.max_clients;
        if shared.active.fetch_add(1, Ordering::SeqCst) >= max {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(stream, max);
            continue;
        }
        let guard = ActiveGuard(shared.clone());
        let sh = shared.clone();
        // Client threads parse requests and wait; models run on the
        // inference thread (`worker`), so this stack only holds the request
        // handling (measured in tests/stack_budget.rs).
        let spawned = crate::crash::spawn("client", CLIENT_STACK, move || {
            let _g = guard;
            connection(&sh, stream);
        });
        if let Err(e) = spawned {
            log::error!("cannot start a client thread: {e}");
        }
    }
}

fn refuse_busy(mut stream: UnixStream, max: usize) {
    log::warn!("refusing a client: {max} connections already being served");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = write_frame(
        &mut stream,
        &Response::error(
            ErrorKind::Busy,
            format!("{max} clients are being served; try again"),
        ),
    );
}

fn connection(sh: &Arc<Shared>, mut stream: UnixStream) {
    let peer = match peer_of(&stream) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("cannot read the peer's credentials: {e}; dropping");
            return;
        }
    };
    let timeout = Duration::from_millis(sh.cfg.load().daemon.client_timeout_ms);
    if stream.set_read_timeout(Some(timeout)).is_err()
        || stream.set_write_timeout(Some(timeout)).is_err()
    {
        return;
    }
    // Large frames (enrolment images, imports) only from administrators.
    let cap = if sh.policy.load().check(&peer, &Action::Admin).is_ok() {
        MAX_ADMIN_REQUEST
    } else {
        MAX_REQUEST
    };
    loop {
        let body = match read_frame_bytes(&mut stream, cap) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(FrameError::TooLarge { len, max }) => {
                log::warn!(
                    "uid {} pid {}: frame of {len} bytes refused (limit {max})",
                    peer.uid,
                    peer.pid
                );
                let _ = write_frame(
                    &mut stream,
                    &Response::error(
                        ErrorKind::TooLarge,
                        format!("frame of {len} bytes exceeds the limit of {max}"),
                    ),
                );
                return;
            }
            Err(FrameError::Timeout) => {
                log::debug!(
                    "uid {} pid {}: no request within {timeout:?}; dropping",
                    peer.uid,
                    peer.pid
                );
                return;
            }
            Err(FrameError::Malformed(m)) => {
                log::warn!("uid {} pid {}: malformed frame: {m}", peer.uid, peer.pid);
                let _ = write_frame(&mut stream, &Response::error(ErrorKind::BadRequest, m));
                return;
            }
            Err(FrameError::Io(e)) => {
                log::debug!("uid {}: {e}", peer.uid);
                return;
            }
        };
        let req = match parse_request(&body) {
            Ok(r) => r,
            Err(resp) => {
                log::warn!("uid {} pid {}: bad request", peer.uid, peer.pid);
                let _ = write_frame(&mut stream, &resp);
                return;
            }
        };
        if let Request::Subscribe = req {
            subscribe(sh, &peer, stream);
            return;
        }
        let name = req.name();
        let t0 = Instant::now();
        let sh2 = sh.clone();
        let resp =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&sh2, &peer, req)))
                .unwrap_or_else(|_| {
                    log::error!("{name}: the handler panicked");
                    Response::error(ErrorKind::Internal, "internal error")
                });
        log::info!(
            "uid {} pid {}: {name} -> {} ({:.0} ms)",
            peer.uid,
            peer.pid,
            summary(&resp),
            ms_since(t0)
        );
        if write_frame(&mut stream, &resp).is_err() {
            return;
        }
    }
}

fn summary(r: &Response) -> String {
    match r {
        Response::Unlock {
            user,
            score,
            frames,
            ..
        } => format!("unlock {user} (score {score:.3}, {frames} frames)"),
        Response::Deny { reason, .. } => format!("deny ({reason:?})"),
        Response::Error { kind, message } => format!("error {kind:?}: {message}"),
        Response::Enrolled(e) => format!(
            "enrolled {} ({} + {} synthetic-masked templates)",
            e.user, e.unmasked, e.synthetic_masked
        ),
        Response::Removed { user, .. } => format!("removed {user}"),
        _ => "ok".into(),
    }
}

fn forbidden(d: crate::daemon::auth::Denied) -> Response {
    Response::error(ErrorKind::Forbidden, d.0)
}

fn handle(sh: &Arc<Shared>, peer: &Peer, req: Request) -> Response {
    let policy = sh.policy.load();
    let need = match &req {
        Request::Verify { user, .. } => {
            let uid = sh
                .gallery
                .store()
                .user(user)
                .ok()
                .flatten()
                .and_then(|u| u.uid);
            policy.check(peer, &Action::Verify { user, uid })
        }
        Request::Status => policy.check(peer, &Action::Status),
        Request::Identify { .. } | Request::Subscribe => policy.check(peer, &Action::Subscribe),
        _ => policy.check(peer, &Action::Admin),
    };
    if let Err(d) = need {
        log::warn!(
            "uid {} pid {}: {} refused: {d}",
            peer.uid,
            peer.pid,
            req.name()
        );
        return forbidden(d);
    }
    match req {
        Request::Verify { user, timeout_ms } => verify(sh, &user, timeout_ms),
        Request::Identify { timeout_ms } => identify(sh, timeout_ms),
        Request::Enroll { user, uid, source } => enroll(sh, &user, uid, source),
        Request::Remove { user } => match sh.gallery.remove_user(&user) {
            Ok(ids) => Response::Removed {
                user,
                templates: ids.len(),
            },
            Err(e) => Response::error(ErrorKind::Gallery, e.to_string()),
        },
        Request::List => list(sh),
        Request::Status => Response::Status(Box::new(status(sh))),
        Request::Export => export(sh),
        Request::Import { data_b64, merge } => import(sh, &data_b64, merge),
        Request::Subscribe => Response::error(ErrorKind::Internal, "subscribe is handled apart"),
    }
}

fn budget(sh: &Shared, timeout_ms: u64) -> Duration {
    let d = &sh.cfg.load().decision;
    let t = if timeout_ms == 0 {
        d.default_timeout_ms
    } else {
        timeout_ms
    };
    Duration::from_millis(t.min(d.max_timeout_ms))
}

fn params(sh: &Shared) -> (u32, f32) {
    let c = sh.cfg.load();
    (
        c.decision.min_face_px,
        c.thresholds
            .presence
            .unwrap_or(crate::face::presence::DEFAULT_THRESHOLD),
    )
}

/// One frame through the models, on the inference thread.
fn analyze(
    sh: &Shared,
    img: &image::RgbImage,
) -> Result<crate::engine::Analysis, crate::engine::EngineError> {
    let (min_face_px, presence) = params(sh);
    sh.inference
        .run(|| sh.engine.analyze(img, min_face_px, presence))
}

fn uncalibrated() -> Response {
    Response::error(
        ErrorKind::Config,
        "no thresholds: the embedder bundle is uncalibrated; set [thresholds] unmasked and masked in the config",
    )
}

fn source_error(why: String) -> Response {
    Response::error(ErrorKind::Source, why)
}

fn verify(sh: &Arc<Shared>, user: &str, timeout_ms: u64) -> Response {
    let t0 = Instant::now();
    let Some(thr) = sh.resolved_thresholds() else {
        return uncalibrated();
    };
    if let Err(left) = lock(&sh.lockout).check(user, t0) {
        return Response::Deny {
            reason: DenyReason::LockedOut,
            best_score: None,
            frames: 0,
            ms: 0.0,
            retry_after_ms: Some(left.as_millis() as u64),
        };
    }
    let snap = sh.gallery.snapshot();
    let enrolled = sh
        .gallery
        .store()
        .template_ids_of(user)
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    if !enrolled {
        return Response::Deny {
            reason: DenyReason::NotEnrolled,
            best_score: None,
            frames: 0,
            ms: ms_since(t0),
            retry_after_ms: None,
        };
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
                let ts = Instant::now();
                let score = sh
                    .gallery
                    .search(
                        &f.embedding,
                        &SearchOptions {
                            k,
                            ..Default::default()
                        },
                    )
                    .ok()
                    .and_then(|m| m.into_iter().find(|m| &*m.user == user))
                    .map_or(-1.0, |m| m.score);
                stages.scan_ms += ms_since(ts);
                last_masked = f.masked;
                match fusion.push(score, thr.for_probe(f.masked)) {
                    Some(Fused::Accept { score, passed, .. }) => {
                        lock(&sh.lockout).success(user);
                        return Response::Unlock {
                            user: user.to_string(),
                            score,
                            frames: passed,
                            masked: f.masked,
                            ms: ms_since(t0),
                            stages,
                        };
                    }
                    Some(Fused::Reject { best, seen }) => {
                        return deny_no_match(sh, user, Some(best), seen, t0, true);
                    }
                    None => {}
                }
            }
            Err(WaitError::Timeout) => {
                if fusion.seen() == 0 {
                    return Response::Deny {
                        reason: DenyReason::NoFace,
                        best_score: None,
                        frames: 0,
                        ms: ms_since(t0),
                        retry_after_ms: None,
                    };
                }
                log::debug!("verify {user}: time budget spent (last probe masked: {last_masked})");
                // Out of time with some frames passing is not evidence of an
                // impostor: only count failures where no frame passed.
                return deny_no_match(
                    sh,
                    user,
                    fusion.best(),
                    fusion.seen(),
                    t0,
                    fusion.passed() == 0,
                );
            }
            Err(WaitError::Gone(why)) => return source_error(why),
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
) -> Response {
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
    Response::Deny {
        reason: DenyReason::NoMatch,
        best_score: best,
        frames: seen,
        ms: ms_since(t0),
        retry_after_ms: (!delay.is_zero()).then_some(delay.as_millis() as u64),
    }
}

fn identify(sh: &Arc<Shared>, timeout_ms: u64) -> Response {
    let t0 = Instant::now();
    let Some(thr) = sh.resolved_thresholds() else {
        return uncalibrated();
    };
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
                seen += 1;
                let ts = Instant::now();
                let top = best_match(sh, &f.embedding);
                stages.scan_ms += ms_since(ts);
                if let Some(m) = top {
                    best = Some(best.map_or(m.score, |b| b.max(m.score)));
                    let fu = per_user.entry(m.user.to_string()).or_insert_with(|| {
                        Fusion::new(cfg.decision.min_frames, cfg.decision.min_frames)
                    });
                    if let Some(Fused::Accept { score, passed, .. }) =
                        fu.push(m.score, thr.for_probe(f.masked))
                    {
                        return Response::Unlock {
                            user: m.user.to_string(),
                            score,
                            frames: passed,
                            masked: f.masked,
                            ms: ms_since(t0),
                            stages,
                        };
                    }
                }
                if seen >= cfg.decision.max_frames {
                    return Response::Deny {
                        reason: DenyReason::NoMatch,
                        best_score: best,
                        frames: seen,
                        ms: ms_since(t0),
                        retry_after_ms: None,
                    };
                }
            }
            Err(WaitError::Timeout) => {
                return Response::Deny {
                    reason: if seen == 0 {
                        DenyReason::NoFace
                    } else {
                        DenyReason::NoMatch
                    },
                    best_score: best,
                    frames: seen,
                    ms: ms_since(t0),
                    retry_after_ms: None,
                }
            }
            Err(WaitError::Gone(why)) => return source_error(why),
        }
    }
}

fn enroll(sh: &Arc<Shared>, user: &str, uid: Option<u32>, source: EnrollSource) -> Response {
    let cfg = sh.cfg.load();
    let e = &cfg.enroll;
    let lim = QualityLimits {
        min_face_px: e.min_face_px,
        min_sharpness: e.min_sharpness,
        max_yaw: e.max_yaw,
    };
    let styles: Vec<MaskStyle> = e
        .synthetic_masks
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let presence = params(sh).1;
    let mut col = Collector {
        rejected: Vec::new(),
        batch: Vec::new(),
        accepted: 0,
    };
    let ctx = (user, &lim, styles.as_slice(), e.seed);
    match source {
        EnrollSource::Images { images } => {
            for im in images {
                let label = format!("file:{}", im.name.chars().take(200).collect::<String>());
                let img = match b64()
                    .decode(im.data_b64.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|b| decode_image(&b))
                {
                    Ok(i) => i,
                    Err(why) => {
                        col.rejected.push(format!("{label}: {why}"));
                        continue;
                    }
                };
                let a = match sh.inference.run(|| sh.engine.analyze(&img, 0, presence)) {
                    Ok(a) => a,
                    Err(err) => {
                        col.rejected.push(format!("{label}: {err}"));
                        continue;
                    }
                };
                if let Err(r) = col.add(sh, ctx, &img, &label, &a) {
                    return r;
                }
            }
        }
        EnrollSource::Camera { frames, timeout_ms } => {
            let want = if frames == 0 {
                e.frames
            } else {
                frames.min(50)
            };
            let t0 = Instant::now();
            let deadline = t0 + budget(sh, timeout_ms.max(1));
            let mut after = 0;
            while (col.accepted as u32) < want {
                match sh.hub.wait_frame(after, t0, deadline) {
                    Ok((c, frame)) => {
                        after = c;
                        let a = match sh
                            .inference
                            .run(|| sh.engine.analyze(&frame.image, 0, presence))
                        {
                            Ok(a) => a,
                            Err(err) => {
                                col.rejected.push(format!("frame {c}: {err}"));
                                continue;
                            }
                        };
                        if let Err(r) =
                            col.add(sh, ctx, &frame.image, &format!("camera frame {c}"), &a)
                        {
                            return r;
                        }
                    }
                    Err(WaitError::Timeout) => break,
                    Err(WaitError::Gone(why)) => return source_error(why),
                }
            }
        }
    }
    let Collector {
        rejected,
        batch,
        accepted,
    } = col;
    if accepted == 0 {
        return Response::error(
            ErrorKind::Quality,
            format!("no usable capture: {}", rejected.join("; ")),
        );
    }
    let existing = sh.gallery.store().user(user);
    let created = match existing {
        Ok(Some(_)) => Ok(()),
        Ok(None) => sh.gallery.add_user(user, uid).map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        return Response::error(ErrorKind::Gallery, e.to_string());
    }
    let synthetic = batch
        .iter()
        .filter(|t| t.condition == Condition::SyntheticMasked)
        .count();
    let unmasked = batch.len() - synthetic;
    match sh.gallery.add_templates(batch) {
        Ok(_) => Response::Enrolled(EnrollReport {
            user: user.to_string(),
            unmasked,
            synthetic_masked: synthetic,
            rejected,
        }),
        Err(e) => Response::error(ErrorKind::Gallery, e.to_string()),
    }
}

struct Collector {
    rejected: Vec<String>,
    batch: Vec<crate::gallery::NewTemplate>,
    accepted: usize,
}

type EnrollCtx<'a> = (&'a str, &'a QualityLimits, &'a [MaskStyle], u64);

impl Collector {
    /// Quality-check one capture and add its templates.
    fn add(
        &mut self,
        sh: &Shared,
        (user, lim, styles, seed): EnrollCtx<'_>,
        img: &image::RgbImage,
        label: &str,
        a: &crate::engine::Analysis,
    ) -> Result<(), Response> {
        let Some(f) = &a.face else {
            self.rejected.push(format!("{label}: no face"));
            return Ok(());
        };
        if let Err(why) = quality(f, lim) {
            self.rejected.push(format!("{label}: {why}"));
            return Ok(());
        }
        let seed = seed.wrapping_add(self.accepted as u64 * 1000);
        match sh
            .inference
            .run(|| templates_for(&sh.engine, user, label, img, f, styles, seed))
        {
            Ok(t) => {
                self.batch.extend(t);
                self.accepted += 1;
                Ok(())
            }
            Err(err) => Err(Response::error(ErrorKind::Internal, err.to_string())),
        }
    }
}

fn decode_image(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let mut r = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(crate::face::imageio::MAX_SIDE);
    limits.max_image_height = Some(crate::face::imageio::MAX_SIDE);
    limits.max_alloc = Some(512 << 20);
    r.limits(limits);
    r.decode().map(|i| i.to_rgb8()).map_err(|e| e.to_string())
}

fn list(sh: &Shared) -> Response {
    let users = match sh.gallery.users() {
        Ok(u) => u,
        Err(e) => return Response::error(ErrorKind::Gallery, e.to_string()),
    };
    let templates = match sh.gallery.templates() {
        Ok(t) => t,
        Err(e) => return Response::error(ErrorKind::Gallery, e.to_string()),
    };
    let mut out: Vec<UserInfo> = users
        .into_iter()
        .map(|u| UserInfo {
            name: u.name,
            uid: u.uid,
            enabled: u.enabled,
            unmasked: 0,
            masked: 0,
            synthetic_masked: 0,
        })
        .collect();
    for t in &templates {
        if let Some(u) = out.iter_mut().find(|u| u.name == t.user) {
            match t.condition {
                Condition::Unmasked => u.unmasked += 1,
                Condition::Masked => u.masked += 1,
                Condition::SyntheticMasked => u.synthetic_masked += 1,
            }
        }
    }
    Response::Users { users: out }
}

pub fn status(sh: &Shared) -> StatusInfo {
    let (source, source_state, frames, source_reopens) = sh.hub.status();
    let counts = sh.gallery.counts().ok();
    let (tu, tm) = sh.thresholds();
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
        embedder: sh.engine.embedder.name().to_string(),
        detector: sh.detector_name.clone(),
        threshold_unmasked: tu,
        threshold_masked: tm,
        clients: sh.active.load(Ordering::SeqCst),
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

fn export(sh: &Shared) -> Response {
    let p = temp_path(sh, "export");
    let r = sh
        .gallery
        .export(&p)
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::read(&p).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&p);
    match r {
        Ok(bytes) => Response::Exported {
            data_b64: b64().encode(bytes),
        },
        Err(e) => Response::error(ErrorKind::Gallery, e),
    }
}

fn import(sh: &Shared, data_b64: &str, merge: bool) -> Response {
    let bytes = match b64().decode(data_b64.as_bytes()) {
        Ok(b) => b,
        Err(e) => return Response::error(ErrorKind::BadRequest, format!("data_b64: {e}")),
    };
    let p = temp_path(sh, "import");
    if let Err(e) = std::fs::write(&p, bytes) {
        return Response::error(ErrorKind::Internal, e.to_string());
    }
    let mode = if merge {
        ImportMode::Merge
    } else {
        ImportMode::IntoEmpty
    };
    let r = sh.gallery.import(&p, mode);
    let _ = std::fs::remove_file(&p);
    match r {
        Ok(r) => Response::Imported {
            users_added: r.users_added,
            users_kept: r.users_kept,
            templates_added: r.templates_added,
            templates_skipped: r.templates_skipped,
        },
        Err(e) => Response::error(ErrorKind::Gallery, e.to_string()),
    }
}

/// Push door events to this connection until it closes.
fn subscribe(sh: &Arc<Shared>, peer: &Peer, mut stream: UnixStream) {
    if let Err(d) = sh.policy.load().check(peer, &Action::Subscribe) {
        log::warn!("uid {} pid {}: subscribe refused: {d}", peer.uid, peer.pid);
        let _ = write_frame(&mut stream, &forbidden(d));
        return;
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = sync_channel::<DoorEvent>(32);
    lock(&sh.subscribers).push((id, tx));
    log::info!(
        "uid {} pid {}: subscribed to door events",
        peer.uid,
        peer.pid
    );
    if write_frame(&mut stream, &Response::Subscribed).is_err() {
        return;
    }
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(ev) => {
                if write_frame(&mut stream, &Response::Event(ev)).is_err() {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                // Did the client go away? (A subscriber sends nothing.)
                if stream.set_nonblocking(true).is_err() {
                    break;
                }
                let mut b = [0u8; 1];
                let gone = match stream.read(&mut b) {
                    Ok(_) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                if gone || stream.set_nonblocking(false).is_err() {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    lock(&sh.subscribers).retain(|(i, _)| *i != id);
    log::info!("uid {} pid {}: subscriber left", peer.uid, peer.pid);
}

fn broadcast(sh: &Shared, ev: &DoorEvent) {
    let mut subs = lock(&sh.subscribers);
    subs.retain(|(_, tx)| match tx.try_send(ev.clone()) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            log::warn!("a door subscriber is not reading; event dropped for it");
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    });
}

/// Door mode: while someone subscribes (or `door.always`), identify
/// continuously and announce each arrival once; a user is announced again
/// only after being absent for `door.cooldown_ms`.
pub fn spawn_door_loop(sh: Arc<Shared>) -> std::io::Result<()> {
    crate::crash::spawn("door", CLIENT_STACK, move || door_loop(&sh)).map(|_| ())
}

fn door_loop(sh: &Arc<Shared>) {
    let mut last_seen: HashMap<String, Instant> = HashMap::new();
    let mut window: VecDeque<(String, f32)> = VecDeque::new();
    let mut arrival: Option<Instant> = None;
    let mut after = 0;
    loop {
        let cfg = sh.cfg.load_full();
        let wanted = cfg.door.always || !lock(&sh.subscribers).is_empty();
        let Some(thr) = sh.resolved_thresholds().filter(|_| wanted) else {
            window.clear();
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let now = Instant::now();
        let r = sh.analyzer.next(
            &sh.hub,
            |img| analyze(sh, img),
            after,
            now - Duration::from_millis(200),
            now + Duration::from_secs(1),
        );
        let (c, a) = match r {
            Ok(x) => x,
            Err(WaitError::Timeout) => continue,
            Err(WaitError::Gone(_)) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        after = c;
        let Some(f) = &a.face else {
            window.clear();
            arrival = None;
            continue;
        };
        arrival.get_or_insert(Instant::now());
        let top = best_match(sh, &f.embedding);
        let Some(m) = top.filter(|m| m.score >= thr.for_probe(f.masked)) else {
            window.push_back((String::new(), -1.0));
            if window.len() > cfg.decision.max_frames as usize {
                window.pop_front();
            }
            continue;
        };
        let user = m.user.to_string();
        window.push_back((user.clone(), m.score));
        if window.len() > cfg.decision.max_frames as usize {
            window.pop_front();
        }
        let passes: Vec<f32> = window
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, s)| *s)
            .collect();
        let now = Instant::now();
        let cooldown = Duration::from_millis(cfg.door.cooldown_ms);
        let announced_recently = last_seen
            .get(&user)
            .is_some_and(|t| now.duration_since(*t) < cooldown);
        if passes.len() as u32 >= cfg.decision.min_frames {
            if !announced_recently {
                let ev = DoorEvent {
                    user: user.clone(),
                    score: passes.iter().sum::<f32>() / passes.len() as f32,
                    masked: f.masked,
                    frames: passes.len() as u32,
                    ms: arrival.map_or(0.0, ms_since),
                    at: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                };
                log::info!("door: {user} arrived (score {:.3})", ev.score);
                broadcast(sh, &ev);
            }
            last_seen.insert(user, now);
        }
        if last_seen.len() > 10_000 {
            last_seen.retain(|_, t| now.duration_since(*t) < cooldown);
        }
    }
}
