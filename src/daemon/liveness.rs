//! The daemon's side of the presentation-attack checks (issue 15 §3,
//! docs/LIVENESS.md): which checks `[liveness]` asks of a service, the IR
//! frame a colour frame is paired with, the detector run on it, and the
//! geometry calibration. The judgement itself is pure
//! ([`crate::face::liveness`]).

use std::time::{Duration, Instant};

use crate::engine::Analysis;
use crate::face::liveness::{judge, Geometry, SEARCH_MARGIN};
use crate::face::track::{self, TrackOptions};
use crate::protocol::{IrCalibration, LivenessCheck};

use super::config::LivenessPolicy;
use super::hub::WaitError;
use super::service::{analyze, ServiceError};
use super::Shared;

/// Who a decision is for (`[liveness] pam` / `door`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Verify requests: the PAM helper and `facegate verify`.
    Pam,
    /// Door mode and identify requests.
    Door,
}

/// The policy in force for `service`.
pub fn policy(sh: &Shared, service: Service) -> LivenessPolicy {
    let c = sh.cfg.load();
    match service {
        Service::Pam => c.liveness.pam,
        Service::Door => c.liveness.door,
    }
}

/// Run the checks `[liveness]` asks of `service` for the face of `a` (the
/// frame a decision is about to accept). `Ok` with the checks (empty when
/// none is asked) when all passed, `Err` with them when one failed.
pub fn check(
    sh: &Shared,
    service: Service,
    a: &Analysis,
) -> Result<Vec<LivenessCheck>, Vec<LivenessCheck>> {
    let p = policy(sh, service);
    let mut checks = Vec::new();
    if p.ir() {
        checks.push(ir_check(sh, a));
    }
    if p.rgb() {
        checks.push(rgb_check(sh, a));
    }
    let mut passed = true;
    for c in &checks {
        if c.passed {
            log::debug!("liveness {} passed: {}", c.check, c.detail);
        } else {
            log::warn!("liveness {} failed: {}", c.check, c.detail);
            passed = false;
        }
    }
    if passed {
        Ok(checks)
    } else {
        Err(checks)
    }
}

/// The RGB anti-spoofing model's score for the face, on the frame the
/// decision is about (`[liveness.rgb]`).
fn rgb_check(sh: &Shared, a: &Analysis) -> LivenessCheck {
    let out = |passed: bool, detail: String| LivenessCheck {
        check: "rgb".into(),
        passed,
        detail,
    };
    let (Some(face), Some(frame)) = (&a.face, &a.frame) else {
        return out(false, "no face in the colour frame".into());
    };
    let act = sh.active();
    let Some(model) = &act.antispoof else {
        return out(
            false,
            "the anti-spoofing model is not loaded ([liveness.rgb] bundle)".into(),
        );
    };
    let min = sh.cfg.load().liveness.rgb.min_score;
    match sh
        .inference
        .run(|| model.score(&frame.image, face.face.bbox))
    {
        Ok(s) if s >= min => out(true, format!("score {s:.2} (at least {min:.2})")),
        Ok(s) => out(
            false,
            format!("score {s:.2} below {min:.2}: looks like a photo or a screen"),
        ),
        Err(e) => out(false, format!("anti-spoofing failed: {e}")),
    }
}

fn ir_check(sh: &Shared, a: &Analysis) -> LivenessCheck {
    let out = |passed: bool, detail: String| LivenessCheck {
        check: "ir".into(),
        passed,
        detail,
    };
    let fail = |detail: String| out(false, detail);
    let Some(hub) = &sh.ir_hub else {
        // `[camera.ir]` added by a reload: its camera starts with a restart.
        return fail("no IR camera running ([camera.ir] takes effect after a restart)".into());
    };
    let Some(face) = &a.face else {
        return fail("no face in the colour frame".into());
    };
    let Some(at) = a.captured() else {
        return fail("the colour frame's capture time is unknown".into());
    };
    let cfg = sh.cfg.load();
    let ir = &cfg.liveness.ir;
    let skew = Duration::from_millis(ir.max_skew_ms);
    let frame = match hub.closest_frame(at, skew, at + skew) {
        Ok(f) => f,
        Err(WaitError::Timeout) => {
            return fail(format!(
                "no IR frame within {} ms of the colour frame",
                ir.max_skew_ms
            ))
        }
        Err(WaitError::Gone(why)) => return fail(format!("IR {why}")),
    };
    // Search only around where the colour face maps to, in the tracker's
    // fixed-size network input (a new input size would make tract plan the
    // network again: ~100 ms), docs/LIVENESS.md.
    let geometry = ir.geometry();
    let img = &frame.image;
    let (w, h) = img.dimensions();
    let m = geometry.map_box(face.face.bbox);
    let c = [(m[0] + m[2]) / 2.0, (m[1] + m[3]) / 2.0];
    if !(c[0] >= 0.0 && c[1] >= 0.0 && c[0] < w as f32 && c[1] < h as f32) {
        return fail(
            "the colour face maps outside the IR frame; check [liveness.ir] geometry (`facegate calibrate-ir`)"
                .into(),
        );
    }
    let side = TrackOptions::default().side;
    let size = (m[2] - m[0]).max(m[3] - m[1]).max(1.0);
    let r = track::region(c, size, SEARCH_MARGIN, side, w, h);
    let act = sh.active();
    let found = sh.inference.run(|| {
        let (input, back) = track::region_input(img, r, side);
        act.engine.detector.detect_raw(&input).map(|faces| {
            faces
                .into_iter()
                .map(|f| track::to_frame(f, r, back))
                .collect::<Vec<_>>()
        })
    });
    let faces = match found {
        Ok(f) => f,
        Err(e) => return fail(format!("IR frame: detection failed: {e}")),
    };
    let v = judge(face.face.bbox, &faces, img, &geometry, &ir.params());
    out(v.passed(), v.to_string())
}

/// Frames to keep from the IR camera for pairing (`closest_frame`).
pub const IR_FRAMES_KEPT: usize = 4;

/// Measure the colour→IR geometry: over up to `frames` colour frames with
/// exactly one face, detect in the IR frame closest in time; where it also
/// has exactly one face, pair the five landmarks; fit (docs/LIVENESS.md).
pub fn calibrate(sh: &Shared, frames: u32, timeout_ms: u64) -> Result<IrCalibration, ServiceError> {
    let Some(hub) = &sh.ir_hub else {
        return Err(ServiceError::BadRequest(
            "no IR camera: configure [camera.ir] (and restart) first".into(),
        ));
    };
    let frames = frames.clamp(2, 500);
    let t0 = Instant::now();
    let deadline = t0 + super::service::budget(sh, timeout_ms);
    let skew = Duration::from_millis(sh.cfg.load().liveness.ir.max_skew_ms);
    let (mut pairs, mut used, mut looked) = (Vec::new(), 0u32, 0u32);
    let mut after = 0;
    while looked < frames {
        let (c, a) = match sh
            .analyzer
            .next(&sh.hub, |img| analyze(sh, img), after, t0, deadline)
        {
            Ok(x) => x,
            Err(WaitError::Timeout) => break,
            Err(WaitError::Gone(why)) => return Err(ServiceError::Source(why)),
        };
        after = c;
        looked += 1;
        let (Some(f), Some(at)) = (&a.face, a.captured()) else {
            continue;
        };
        if f.faces != 1 {
            continue;
        }
        let ir = match hub.closest_frame(at, skew, at + skew) {
            Ok(ir) => ir,
            Err(WaitError::Timeout) => continue,
            Err(WaitError::Gone(why)) => return Err(ServiceError::Source(format!("IR {why}"))),
        };
        let act = sh.active();
        let ir_faces = sh
            .inference
            .run(|| act.engine.detector.detect(&ir.image))
            .map_err(|e| ServiceError::Internal(format!("IR frame: detection failed: {e}")))?;
        let [irf] = ir_faces.as_slice() else {
            continue;
        };
        used += 1;
        pairs.extend(f.face.landmarks.iter().copied().zip(irf.landmarks));
    }
    let fit = Geometry::fit(&pairs).map_err(|e| {
        ServiceError::Quality(format!(
            "{e} ({used} of {looked} frames had one face in both cameras)"
        ))
    })?;
    log::info!(
        "IR geometry measured over {used} frames: scale {:?}, offset {:?}, rms {:.1} px",
        fit.geometry.scale,
        fit.geometry.offset,
        fit.rms_px
    );
    Ok(IrCalibration {
        scale: fit.geometry.scale,
        offset: fit.geometry.offset,
        points: fit.points,
        frames: used,
        rms_px: fit.rms_px,
        max_px: fit.max_px,
    })
}
