//! Serving the socket: one thread per connection, at most
//! `daemon.max_clients` and under the limits per uid of
//! [`limits`](super::limits) (more are told `busy`, or idle connections are
//! closed to make room), peer credentials checked on every request, every
//! request read within a deadline and every write with a timeout. A request
//! is read, checked against the policy, handed to the
//! [`service`](super::service) and its result written back through
//! [`respond`]. Nothing a client sends can panic the daemon: requests are
//! served under `catch_unwind` and answer `internal` if they ever do.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::daemon::auth::{peer_of, Action, Peer};
use crate::daemon::limits::{Evicted, Limits, Refused};
use crate::protocol::{
    parse_request, read_frame_bytes, write_frame, DoorEvent, ErrorKind, FrameError, Request,
    Response, MAX_ADMIN_REQUEST, MAX_REQUEST,
};

use super::service::{self, ms_since, respond, Answer, ServiceError};
use super::Shared;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's place in the table, given back when its thread ends.
struct ConnGuard {
    sh: Arc<Shared>,
    id: u64,
}
impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.sh.conns).remove(self.id);
    }
}

/// Stack of a client thread (no inference runs there).
pub const CLIENT_STACK: usize = 512 << 10;

/// At most one warning per `EVERY` for events a client can repeat at will
/// (refusals, evictions); the ones in between are counted.
struct Throttle {
    last: Option<Instant>,
    quiet: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(5);

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < Self::EVERY)
        {
            self.quiet += 1;
            log::debug!("{what}");
            return;
        }
        match std::mem::take(&mut self.quiet) {
            0 => log::warn!("{what}"),
            n => log::warn!("{what} (and {n} more refusals or closings since the last warning)"),
        }
        self.last = Some(now);
    }
}

/// Accept connections forever.
pub fn serve(shared: Arc<Shared>, listener: UnixListener) {
    let mut throttle = Throttle {
        last: None,
        quiet: 0,
    };
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = match peer_of(&stream) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("cannot read the peer's credentials: {e}; dropping");
                continue;
            }
        };
        // The table keeps a handle to shut the connection down if it must
        // make room for another.
        let handle = match stream.try_clone() {
            Ok(h) => h,
            Err(e) => {
                log::error!("cannot keep a client's socket: {e}");
                continue;
            }
        };
        let lim = Limits::from_config(&shared.cfg.load().daemon);
        let admission = lock(&shared.conns).admit(peer.uid, handle, &lim, Instant::now());
        for ev in admission.evicted {
            close(ev, &peer, &mut throttle);
        }
        let id = match admission.outcome {
            Ok(id) => id,
            Err(why) => {
                throttle.warn(format_args!(
                    "uid {} pid {}: refused: {why}",
                    peer.uid, peer.pid
                ));
                refuse_busy(stream, &why);
                continue;
            }
        };
        let guard = ConnGuard {
            sh: shared.clone(),
            id,
        };
        // Client threads parse requests and wait; models run on the
        // inference thread (`worker`), so this stack only holds the request
        // handling (measured in tests/stack_budget.rs).
        let spawned = crate::crash::spawn("client", CLIENT_STACK, move || {
            connection(&guard.sh, stream, peer, guard.id);
        });
        if let Err(e) = spawned {
            log::error!("cannot start a client thread: {e}");
        }
    }
}

/// Close a connection evicted to make room for `newcomer`: its thread sees
/// the end of the stream and ends.
fn close(ev: Evicted<UnixStream>, newcomer: &Peer, throttle: &mut Throttle) {
    let _ = ev.handle.shutdown(std::net::Shutdown::Both);
    throttle.warn(format_args!(
        "uid {}: connection closed after {} ms idle for uid {} pid {}: {}",
        ev.uid,
        ev.waited.as_millis(),
        newcomer.uid,
        newcomer.pid,
        ev.why
    ));
}

/// Tell a refused client why, without ever blocking the accept loop.
fn refuse_busy(stream: UnixStream, why: &Refused) {
    if stream.set_nonblocking(true).is_ok() {
        let mut s = &stream;
        let _ = write_frame(&mut s, &Response::error(ErrorKind::Busy, why.to_string()));
    }
}

/// A reader that fails with `TimedOut` once `until` has passed, however the
/// bytes trickle in: a request must be complete by its deadline.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

fn connection(sh: &Arc<Shared>, mut stream: UnixStream, peer: Peer, id: u64) {
    let timeout = Duration::from_millis(sh.cfg.load().daemon.client_timeout_ms);
    if stream.set_write_timeout(Some(timeout)).is_err() {
        return;
    }
    // Large frames (enrolment images, imports) only from administrators.
    let cap = if sh.policy.load().check(&peer, &Action::Admin).is_ok() {
        MAX_ADMIN_REQUEST
    } else {
        MAX_REQUEST
    };
    loop {
        let mut reader = Deadline {
            stream: &stream,
            until: Instant::now() + timeout,
        };
        let body = match read_frame_bytes(&mut reader, cap) {
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
                    "uid {} pid {}: no complete request within {timeout:?}; dropping",
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
            subscribe(sh, &peer, id, stream);
            return;
        }
        let name = req.name();
        let lim = Limits::from_config(&sh.cfg.load().daemon);
        let begun = lock(&sh.conns).begin(id, &lim, Instant::now());
        let resp = match begun {
            Ok(()) => {
                let t0 = Instant::now();
                let sh2 = sh.clone();
                let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle(&sh2, &peer, req)
                }))
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
                resp
            }
            // Closed to make room between reading and serving: nobody to answer.
            Err(Refused::Gone) => return,
            Err(why) => {
                log::warn!("uid {} pid {}: {name} refused: {why}", peer.uid, peer.pid);
                Response::error(ErrorKind::Busy, why.to_string())
            }
        };
        if write_frame(&mut stream, &resp).is_err()
            || lock(&sh.conns).wait(id, Instant::now()).is_err()
        {
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
                .active()
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
            let r = service::enroll(sh, &user, uid, source).map(Answer::Enrolled);
            release_free_memory();
            r
        }
        Request::Remove { user } => {
            service::remove(sh, &user).map(|templates| Answer::Removed { user, templates })
        }
        Request::List => service::list(sh).map(Answer::Users),
        Request::Status => Ok(Answer::Status(Box::new(service::status(sh)))),
        Request::Export => service::export(sh).map(Answer::Exported),
        Request::Import { data_b64, merge } => {
            let r = service::import(sh, &data_b64, merge).map(Answer::Imported);
            release_free_memory();
            r
        }
        Request::Reenroll => super::reenroll::reenroll(sh).map(Answer::Reenrolled),
        Request::CalibrateIr { frames, timeout_ms } => {
            super::liveness::calibrate(sh, frames, timeout_ms).map(Answer::IrCalibration)
        }
        Request::Subscribe => Err(ServiceError::Internal("subscribe is handled apart".into())),
    }
}

/// After an enrolment or an import (rare; full-size photos decoded, a
/// backup parsed): hand the memory they freed back to the kernel, which
/// malloc would otherwise keep (issue 17 §4; docs/PERFORMANCE.md "Memory").
fn release_free_memory() {
    if crate::malloc::trim() {
        log::debug!("freed memory returned to the kernel");
    }
}

/// Push door events to this connection until it closes.
fn subscribe(sh: &Arc<Shared>, peer: &Peer, conn: u64, mut stream: UnixStream) {
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
    // A stream is never closed to make room (only subscribers may hold one).
    if lock(&sh.conns).stream(conn, Instant::now()).is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_trickling_client_misses_its_deadline() {
        let (a, mut b) = UnixStream::pair().unwrap();
        // A frame of 100 bytes announced, then one byte every 20 ms: each
        // read succeeds well within any per-read timeout.
        let writer = std::thread::spawn(move || {
            let _ = b.write_all(&100u32.to_be_bytes());
            for _ in 0..100 {
                if b.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let t = Instant::now();
        let mut r = Deadline {
            stream: &a,
            until: t + Duration::from_millis(300),
        };
        let got = read_frame_bytes(&mut r, 1 << 10);
        assert!(matches!(got, Err(FrameError::Timeout)), "{got:?}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1000),
            "{took:?}"
        );
        drop(a);
        writer.join().unwrap();
        // A frame that arrives in time is read whole.
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&[0, 0, 0, 2, b'{', b'}']).unwrap();
        let mut r = Deadline {
            stream: &a,
            until: Instant::now() + Duration::from_millis(300),
        };
        assert_eq!(read_frame_bytes(&mut r, 1 << 10).unwrap(), b"{}");
    }
}
