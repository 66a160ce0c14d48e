//! Serving the socket: one thread per connection (at most
//! `daemon.max_clients`; more are told `busy`), peer credentials checked on
//! every request, every read and write with a timeout. A request is read,
//! checked against the policy, handed to the [`service`](super::service)
//! and its result written back through [`respond`]. Nothing a client sends
//! can panic the daemon: requests are served under `catch_unwind` and
//! answer `internal` if they ever do.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::daemon::auth::{peer_of, Action, Peer};
use crate::protocol::{
    parse_request, read_frame_bytes, write_frame, DoorEvent, ErrorKind, FrameError, Request,
    Response, MAX_ADMIN_REQUEST, MAX_REQUEST,
};

use super::service::{self, ms_since, respond, Answer, ServiceError};
use super::Shared;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
                    respond(Err(ServiceError::Internal("internal error".into())))
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
    respond(Err(ServiceError::Forbidden(d.0)))
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
    respond(serve_request(sh, req))
}

/// Each request to its service call.
fn serve_request(sh: &Arc<Shared>, req: Request) -> Result<Answer, ServiceError> {
    match req {
        Request::Verify { user, timeout_ms } => {
            service::verify(sh, &user, timeout_ms).map(Answer::Decision)
        }
        Request::Identify { timeout_ms } => service::identify(sh, timeout_ms).map(Answer::Decision),
        Request::Enroll { user, uid, source } => {
            service::enroll(sh, &user, uid, source).map(Answer::Enrolled)
        }
        Request::Remove { user } => {
            service::remove(sh, &user).map(|templates| Answer::Removed { user, templates })
        }
        Request::List => service::list(sh).map(Answer::Users),
        Request::Status => Ok(Answer::Status(Box::new(service::status(sh)))),
        Request::Export => service::export(sh).map(Answer::Exported),
        Request::Import { data_b64, merge } => {
            service::import(sh, &data_b64, merge).map(Answer::Imported)
        }
        Request::Subscribe => Err(ServiceError::Internal("subscribe is handled apart".into())),
    }
}

/// Push door events to this connection until it closes.
fn subscribe(sh: &Arc<Shared>, peer: &Peer, mut stream: UnixStream) {
    if let Err(d) = sh.policy.load().check(peer, &Action::Subscribe) {
        log::warn!("uid {} pid {}: subscribe refused: {d}", peer.uid, peer.pid);
        let _ = write_frame(&mut stream, &forbidden(d));
        return;
    }
    // Door mode refuses rather than guesses (issue 15).
    if let Err(e) = super::ident::current(sh) {
        log::warn!("uid {} pid {}: subscribe refused: {e}", peer.uid, peer.pid);
        let _ = write_frame(&mut stream, &respond(Err(e)));
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
