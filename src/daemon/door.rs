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
    // The user whose liveness refusal was logged last, likewise (until an
    // arrival is announced).
    let mut refused_live: Option<String> = None;
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
                // A match: now whether it is a live face (`[liveness] door`).
                let liveness = match super::liveness::check(sh, Service::Door, &a) {
                    Ok(checks) => checks,
                    Err(checks) => {
                        // Not announced, not marked as seen: the real
                        // person arriving next is still announced.
                        if refused_live.as_deref() != Some(user.as_str()) {
                            log::warn!(
                                "door: {user} matched but was refused: {}",
                                proto::liveness_line(&checks)
                            );
                            refused_live = Some(user);
                        }
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
