//! The camera thread and the frame hub.
//!
//! One thread owns the [`FrameSource`]: it reads frames and publishes the
//! latest one; when the source fails it is dropped and reopened with
//! exponential back-off, while the daemon keeps serving. Requests wait on the
//! hub for a frame newer than the last they saw; a source failure during the
//! wait wakes them with [`WaitError::Gone`].
//!
//! [`Analyzer`] runs the pipeline on each frame at most once, whoever asks:
//! a hundred concurrent verifies share the same detections and embeddings.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::engine::{Analysis, EngineError};
use crate::protocol::Stages;
use crate::source::{Frame, FrameSource, SourceError};

/// Opens the source (replaced on config reload).
pub type Opener = Arc<dyn Fn() -> Result<Box<dyn FrameSource>, SourceError> + Send + Sync>;

#[derive(Debug, Clone, PartialEq)]
pub enum SourceState {
    Opening,
    Streaming,
    Down { why: String, retry_at: Instant },
}

struct HubState {
    latest: Option<(u64, Arc<Frame>)>,
    /// The last frames, newest last ([`Hub::keep_frames`]; the latest only
    /// unless asked).
    recent: VecDeque<Arc<Frame>>,
    counter: u64,
    state: SourceState,
    name: String,
    failures: u64,
    reopens: u64,
    heartbeat: Instant,
}

/// Shared between the camera thread and the request handlers.
pub struct Hub {
    st: Mutex<HubState>,
    cv: Condvar,
    opener: Mutex<Opener>,
    restart: AtomicBool,
    backoff: Mutex<(Duration, Duration)>,
    keep: AtomicUsize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitError {
    /// No new frame before the deadline.
    Timeout,
    /// The source failed while we waited (or was already down).
    Gone(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// `label` names the source in `status` until it is open (then the
    /// source's own name is shown).
    pub fn new(opener: Opener, label: String, min: Duration, max: Duration) -> Arc<Hub> {
        Arc::new(Hub {
            st: Mutex::new(HubState {
                latest: None,
                recent: VecDeque::new(),
                counter: 0,
                state: SourceState::Opening,
                name: label,
                failures: 0,
                reopens: 0,
                heartbeat: Instant::now(),
            }),
            cv: Condvar::new(),
            opener: Mutex::new(opener),
            restart: AtomicBool::new(false),
            backoff: Mutex::new((min, max)),
            keep: AtomicUsize::new(1),
        })
    }

    /// Keep the last `n` frames (at least 1) for [`Hub::closest_frame`]
    /// (the IR camera: a decision pairs its colour frame with the IR frame
    /// captured closest in time).
    pub fn keep_frames(&self, n: usize) {
        self.keep.store(n.max(1), Ordering::SeqCst);
    }

    /// The kept frame captured closest to `at`, if within `max_skew` of
    /// it. Waits until no later frame can be closer — a frame captured at or
    /// after `at` arrived, or `at` is within half a frame period of the
    /// newest — or until `at + max_skew` or `deadline`, whichever is first.
    pub fn closest_frame(
        &self,
        at: Instant,
        max_skew: Duration,
        deadline: Instant,
    ) -> Result<Arc<Frame>, WaitError> {
        let limit = (at + max_skew).min(deadline);
        let gap = |f: &Frame| {
            f.captured
                .saturating_duration_since(at)
                .max(at.saturating_duration_since(f.captured))
        };
        let mut st = lock(&self.st);
        loop {
            if let SourceState::Down { why, .. } = &st.state {
                return Err(WaitError::Gone(format!("camera unavailable: {why}")));
            }
            let now = Instant::now();
            // The next frame is due a frame period after the newest: when
            // `at` is nearer the newest than that, no later frame can be
            // closer, so there is nothing to wait for.
            let next_is_farther = match (st.recent.iter().rev().nth(1), st.recent.back()) {
                (Some(prev), Some(newest)) => {
                    let period = newest.captured.saturating_duration_since(prev.captured);
                    at <= newest.captured + period / 2
                }
                _ => false,
            };
            if next_is_farther || st.recent.iter().any(|f| f.captured >= at) || now >= limit {
                return st
                    .recent
                    .iter()
                    .min_by_key(|f| gap(f))
                    .filter(|f| gap(f) <= max_skew)
                    .cloned()
                    .ok_or(WaitError::Timeout);
            }
            st = self
                .cv
                .wait_timeout(st, limit - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Use a new opener (config reload): the source is reopened.
    pub fn set_opener(&self, opener: Opener, label: String, min: Duration, max: Duration) {
        *lock(&self.opener) = opener;
        lock(&self.st).name = label;
        *lock(&self.backoff) = (min, max);
        self.restart.store(true, Ordering::SeqCst);
    }

    /// (name, state description, frames, reopens).
    pub fn status(&self) -> (String, String, u64, u64) {
        let st = lock(&self.st);
        let state = match &st.state {
            SourceState::Opening => "opening".to_string(),
            SourceState::Streaming => "streaming".to_string(),
            SourceState::Down { why, retry_at } => format!(
                "down, reopening in {} ms: {why}",
                retry_at
                    .saturating_duration_since(Instant::now())
                    .as_millis()
            ),
        };
        (st.name.clone(), state, st.counter, st.reopens)
    }

    /// When the camera thread last did something.
    pub fn heartbeat(&self) -> Instant {
        lock(&self.st).heartbeat
    }

    fn publish(&self, f: Frame) {
        let mut st = lock(&self.st);
        st.counter += 1;
        let c = st.counter;
        let f = Arc::new(f);
        st.recent.push_back(f.clone());
        let keep = self.keep.load(Ordering::Relaxed);
        while st.recent.len() > keep {
            st.recent.pop_front();
        }
        st.latest = Some((c, f));
        st.state = SourceState::Streaming;
        st.heartbeat = Instant::now();
        drop(st);
        self.cv.notify_all();
    }

    fn down(&self, why: String, retry: Duration) {
        let mut st = lock(&self.st);
        st.failures += 1;
        st.latest = None;
        st.recent.clear();
        st.heartbeat = Instant::now();
        st.state = SourceState::Down {
            why,
            retry_at: Instant::now() + retry,
        };
        drop(st);
        self.cv.notify_all();
    }

    /// Wait for a frame newer than `after` captured no earlier than `since`.
    pub fn wait_frame(
        &self,
        after: u64,
        since: Instant,
        deadline: Instant,
    ) -> Result<(u64, Arc<Frame>), WaitError> {
        let mut st = lock(&self.st);
        if let SourceState::Down { why, .. } = &st.state {
            return Err(WaitError::Gone(format!("camera unavailable: {why}")));
        }
        let failures0 = st.failures;
        loop {
            if Instant::now() >= deadline {
                return Err(WaitError::Timeout);
            }
            if let Some((c, f)) = &st.latest {
                if *c > after && f.captured >= since {
                    return Ok((*c, f.clone()));
                }
            }
            if st.failures != failures0 {
                let why = match &st.state {
                    SourceState::Down { why, .. } => why.clone(),
                    _ => "source restarted".into(),
                };
                return Err(WaitError::Gone(format!("camera lost: {why}")));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Run the camera loop until the process exits.
    /// Start the camera thread (`thread`: its name, e.g. "camera", "ir-camera").
    pub fn spawn(self: &Arc<Self>, thread: &str) -> std::io::Result<()> {
        let hub = self.clone();
        // Frame decoding (MJPEG) runs here: the default 2 MiB stack.
        crate::crash::spawn(thread, 2 << 20, move || hub.camera_loop()).map(|_| ())
    }

    fn sleep_unless_restarted(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.restart.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
    }

    fn camera_loop(&self) {
        // "camera" or "ir-camera": says which source a log line is about.
        let role = std::thread::current()
            .name()
            .unwrap_or("camera")
            .to_string();
        let mut backoff = lock(&self.backoff).0;
        let mut first = true;
        loop {
            self.restart.store(false, Ordering::SeqCst);
            let opener = lock(&self.opener).clone();
            if !first {
                lock(&self.st).reopens += 1;
            }
            first = false;
            match opener() {
                Ok(mut src) => {
                    log::info!("{role}: frame source {} open", src.name());
                    {
                        let mut st = lock(&self.st);
                        st.name = src.name().to_string();
                        st.state = SourceState::Streaming;
                    }
                    backoff = lock(&self.backoff).0;
                    let mut bad = 0u32;
                    loop {
                        if self.restart.load(Ordering::SeqCst) {
                            log::info!(
                                "{role}: reopening the frame source (configuration changed)"
                            );
                            self.down("reconfigured".into(), Duration::ZERO);
                            break;
                        }
                        match src.next_frame() {
                            Ok(f) => {
                                bad = 0;
                                self.publish(f);
                            }
                            Err(SourceError::Gone(why)) => {
                                log::warn!(
                                    "{role}: frame source {} gone: {why}; reopening in {} ms",
                                    src.name(),
                                    backoff.as_millis()
                                );
                                self.down(why, backoff);
                                break;
                            }
                            Err(e) => {
                                bad += 1;
                                log::debug!("{role}: frame source {}: {e}", src.name());
                                if bad >= 30 {
                                    log::warn!("{role}: frame source {}: {bad} bad frames in a row ({e}); reopening", src.name());
                                    self.down(e.to_string(), backoff);
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    log::warn!(
                        "{role}: cannot open the frame source: {e}; retrying in {} ms",
                        backoff.as_millis()
                    );
                    self.down(e.to_string(), backoff);
                }
            }
            self.sleep_unless_restarted(backoff);
            let max = lock(&self.backoff).1;
            backoff = (backoff * 2).min(max);
        }
    }
}

struct Cached {
    counter: u64,
    captured: Instant,
    analysis: Arc<Analysis>,
}

#[derive(Default)]
struct AnalyzerState {
    last: Option<Cached>,
    /// Someone is analysing a frame right now (others wait for the result).
    busy: bool,
}

/// Analyses each frame once and shares the result.
#[derive(Default)]
pub struct Analyzer {
    st: Mutex<AnalyzerState>,
    cv: Condvar,
}

struct BusyGuard<'a>(&'a Analyzer);
impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.st).busy = false;
        self.0.cv.notify_all();
    }
}

impl Analyzer {
    /// The analysis of the first frame newer than `after` captured since
    /// `since` (its `capture_ms` is the wait for the frame). Whoever finds no
    /// such analysis and nobody at work runs the pipeline; the others sleep
    /// until it publishes, so waiting requests never queue behind a lock.
    pub fn next(
        &self,
        hub: &Hub,
        analyze: impl FnOnce(&image::RgbImage) -> Result<Analysis, EngineError>,
        after: u64,
        since: Instant,
        deadline: Instant,
    ) -> Result<(u64, Arc<Analysis>), WaitError> {
        let t0 = Instant::now();
        let mut st = lock(&self.st);
        loop {
            if let Some(c) = st.last.as_ref() {
                if c.counter > after && c.captured >= since {
                    return Ok((c.counter, c.analysis.clone()));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            if !st.busy {
                break;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.busy = true;
        let after = after.max(st.last.as_ref().map_or(0, |c| c.counter));
        drop(st);
        let _busy = BusyGuard(self);
        let (counter, frame) = hub.wait_frame(after, since, deadline)?;
        let capture_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut analysis = match analyze(&frame.image) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("frame {counter}: pipeline failed: {e}");
                Analysis {
                    face: None,
                    stages: Stages::default(),
                    embedder_sha: String::new(),
                    frame: None,
                }
            }
        };
        analysis.stages.capture_ms = capture_ms;
        analysis.frame = Some(frame.clone());
        let analysis = Arc::new(analysis);
        lock(&self.st).last = Some(Cached {
            counter,
            captured: frame.captured,
            analysis: analysis.clone(),
        });
        Ok((counter, analysis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        let opener: Opener = Arc::new(|| Err(SourceError::Gone("unused".into())));
        Hub::new(
            opener,
            "test".into(),
            Duration::from_millis(1),
            Duration::from_millis(1),
        )
    }

    fn frame(seq: u64, captured: Instant) -> Frame {
        Frame {
            image: image::RgbImage::new(2, 2),
            seq,
            captured,
        }
    }

    #[test]
    fn closest_frame_pairs_by_capture_time_within_the_skew() {
        let h = hub();
        h.keep_frames(4);
        let t = Instant::now();
        let ms = Duration::from_millis;
        for (i, d) in [0u64, 40, 80, 120, 160].iter().enumerate() {
            h.publish(frame(i as u64, t + ms(*d)));
        }
        // Four kept: 40, 80, 120, 160. A colour frame at 95 pairs with 80.
        let far = t + ms(10_000);
        assert_eq!(h.closest_frame(t + ms(95), ms(30), far).unwrap().seq, 2);
        assert_eq!(h.closest_frame(t + ms(110), ms(30), far).unwrap().seq, 3);
        // 0 was dropped (only four kept): 20 is 20 from 40.
        assert_eq!(h.closest_frame(t + ms(20), ms(30), far).unwrap().seq, 1);
        // Nothing within 10 ms of 100.
        assert!(matches!(
            h.closest_frame(t + ms(100), ms(10), far),
            Err(WaitError::Timeout)
        ));
        // A colour frame newer than every IR frame but within half a period
        // (20 ms) of the newest: the next frame would be farther, so no wait.
        let w = Instant::now();
        assert_eq!(h.closest_frame(t + ms(175), ms(30), far).unwrap().seq, 4);
        assert!(w.elapsed() < ms(15) || Instant::now() > t + ms(205));
        // Beyond half a period: waits until its time plus the skew for a
        // newer frame, then takes the newest if close enough.
        assert_eq!(h.closest_frame(t + ms(185), ms(30), far).unwrap().seq, 4);
        assert!(matches!(
            h.closest_frame(t + ms(200), ms(10), far),
            Err(WaitError::Timeout)
        ));
        // Before any frame is kept, or after the source went down.
        h.down("unplugged".into(), ms(100));
        assert!(matches!(
            h.closest_frame(t + ms(95), ms(30), far),
            Err(WaitError::Gone(w)) if w.contains("unplugged")
        ));
    }

    #[test]
    fn only_the_latest_frame_is_kept_unless_asked() {
        let h = hub();
        let t = Instant::now();
        h.publish(frame(0, t));
        h.publish(frame(1, t + Duration::from_millis(50)));
        assert_eq!(lock(&h.st).recent.len(), 1);
        assert!(matches!(
            h.closest_frame(t, Duration::from_millis(10), t + Duration::from_secs(5)),
            Err(WaitError::Timeout)
        ));
    }
}
