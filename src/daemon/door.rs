//! Door mode: while someone subscribes (or `door.always`), identify
//! continuously and announce each arrival once to the subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::{self as proto, DoorEvent};

use super::hub::WaitError;
use super::liveness::Service;
use super::server::{lock, CLIENT_STACK};
use super::service::{analyze, best_match, ms_since};
use super::Shared;

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

/// After a face matched but failed a liveness check, the same user's face
/// is checked again only this much later (or once the view has been
/// empty): a phone held up to the door costs two checks a second, not one
/// per frame, and the person arriving after it waits at most this long.
pub const LIVENESS_RETRY: Duration = Duration::from_millis(500);

/// The liveness refusal in force: who, and when.
#[derive(Debug, Clone, PartialEq)]
struct Refused {
    user: String,
    at: Instant,
}

/// Whether `user`'s matching face needs the liveness checks now, given the
/// last refusal (None: none since the view was last empty).
fn check_due(last: Option<&Refused>, user: &str, now: Instant) -> bool {
    match last {
        Some(r) if r.user == user => now.saturating_duration_since(r.at) >= LIVENESS_RETRY,
        _ => true,
    }
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
    // The last refusal logged, so a refused door logs once, not per frame.
    let mut refused: Option<String> = None;
    // The last liveness refusal (until an arrival is announced or the view
    // is empty): logged once, and re-checked only after LIVENESS_RETRY.
    let mut refused_live: Option<Refused> = None;
    loop {
        let cfg = sh.cfg.load_full();
        let wanted = cfg.door.always || !lock(&sh.subscribers).is_empty();
        // Identification thresholds for the gallery as it is now (issue 15).
        let thr = match super::ident::current(sh) {
            Ok(t) if wanted => {
                if refused.take().is_some() {
                    log::info!("door: identification possible again ({})", t.basis);
                }
                Some(t.thresholds)
            }
            Ok(_) => None,
            Err(e) => {
                let m = e.to_string();
                if wanted && refused.as_deref() != Some(m.as_str()) {
                    log::warn!("door: no arrivals announced: {m}");
                    refused = Some(m);
                }
                None
            }
        };
        let Some(thr) = thr else {
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
            refused_live = None;
            continue;
        };
        arrival.get_or_insert(Instant::now());
        let act = sh.active();
        if a.embedder_sha != act.embedder_id.sha256 {
            // Analysed by the engine in use before a model switch.
            continue;
        }
        let top = best_match(&act.gallery, f);
        let Some(m) = top.filter(|m| m.score >= thr.for_face(f)) else {
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
                if !check_due(refused_live.as_ref(), &user, now) {
                    continue;
                }
                // A match: now whether it is a live face (`[liveness] door`).
                let liveness = match super::liveness::check(sh, Service::Door, &a) {
                    Ok(checks) => checks,
                    Err(checks) => {
                        // Not announced, not marked as seen: the real
                        // person arriving next is still announced.
                        if refused_live.as_ref().is_none_or(|r| r.user != user) {
                            log::warn!(
                                "door: {user} matched but was refused: {}",
                                proto::liveness_line(&checks)
                            );
                        }
                        refused_live = Some(Refused { user, at: now });
                        continue;
                    }
                };
                refused_live = None;
                let ev = DoorEvent {
                    user: user.clone(),
                    score: passes.iter().sum::<f32>() / passes.len() as f32,
                    masked: f.masked,
                    frames: passes.len() as u32,
                    ms: arrival.map_or(0.0, ms_since),
                    at: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    liveness,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_face_is_checked_again_only_after_the_retry_delay() {
        let t0 = Instant::now();
        let r = Refused {
            user: "ann".into(),
            at: t0,
        };
        assert!(check_due(None, "ann", t0));
        assert!(!check_due(Some(&r), "ann", t0));
        assert!(!check_due(
            Some(&r),
            "ann",
            t0 + LIVENESS_RETRY - Duration::from_millis(1)
        ));
        assert!(check_due(Some(&r), "ann", t0 + LIVENESS_RETRY));
        // Someone else's face is checked at once.
        assert!(check_due(Some(&r), "bob", t0));
    }
}
