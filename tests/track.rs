//! Detection by tracking (issue 17 §1) against the whole-frame detector, on
//! the sequences `facegate bench track` measures (built from registry
//! photos), with the real RetinaFace: what the tracked path finds must be
//! what searching every frame finds, with the same landmarks to within the
//! detector's own scatter, while most frames are tracked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use facegate::bundle::Bundle;
use facegate::eval::track::{background, run, subjects, Scenario};
use facegate::face::detect::{DetectorOptions, TractDetector, CAMERA_PAD_MAX_SIDE};
use facegate::face::track::TrackOptions;

#[test]
fn tracking_finds_what_the_whole_frame_finds() {
    let models = common::models_dir();
    let b = Bundle::open_named(&models, "retinaface-mnet025").unwrap();
    // The daemon's detector.
    let det = TractDetector::from_bundle(
        &b,
        &DetectorOptions {
            pad_max_side: Some(CAMERA_PAD_MAX_SIDE),
            ..Default::default()
        },
    )
    .unwrap();
    let (w, h) = (640, 480);
    let bg = background(&models, w, h).unwrap();
    let opts = TrackOptions::default();
    let n = 30;
    for sc in Scenario::ALL {
        let subs = subjects(&models, &det, sc, h).unwrap();
        let refs: Vec<_> = subs.iter().collect();
        let r = run(&det, &opts, sc, &refs, &bg, n, None).unwrap();
        let avg = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        let (nme, truth_ref, truth_tr) = (
            avg(&r.nme),
            avg(&r.truth_nme_ref),
            avg(&r.truth_nme_tracked),
        );
        eprintln!(
            "{}: {} searches in {n} frames; {}/{} reference faces found, {} extra; NME to the reference {nme:.3}; true faces {}/{} whole, {}/{} tracked; NME to truth {truth_ref:.3} whole, {truth_tr:.3} tracked; same face picked {}/{n}",
            r.name, r.searches, r.ref_matched, r.ref_faces, r.extra, r.truth_ref, r.truth, r.truth_tracked, r.truth, r.same_pick
        );
        assert!(r.ref_faces > 0, "{}: the reference found nothing", r.name);
        assert!(
            r.ref_matched as f32 >= 0.97 * r.ref_faces as f32,
            "{}: tracked path found {} of {} reference faces",
            r.name,
            r.ref_matched,
            r.ref_faces
        );
        assert!(r.extra <= n / 30, "{}: {} extra faces", r.name, r.extra);
        assert!(r.same_pick as f32 >= 0.97 * n as f32, "{}", r.name);
        assert!(r.truth_tracked + 1 >= r.truth_ref, "{}", r.name);
        // Landmarks: close to the reference's, and no further from the truth
        // than the reference is by more than 3 % of the eye distance.
        assert!(nme < 0.12, "{}: NME {nme:.3}", r.name);
        assert!(
            truth_tr <= truth_ref + 0.03,
            "{}: {truth_tr:.3} vs {truth_ref:.3}",
            r.name
        );
        // Tracking happened: searches on schedule (every 10th frame) and
        // when the face left or was absent, not every frame.
        if sc != Scenario::LeaveEnter {
            assert!(
                r.searches <= n.div_ceil(opts.every as usize) + 1,
                "{}: {} searches",
                r.name,
                r.searches
            );
        } else {
            assert!(r.searches < n, "{}: {} searches", r.name, r.searches);
        }
    }
}
