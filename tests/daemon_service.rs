//! The daemon's service layer without a socket: real models and gallery, a
//! replay camera, and `facegate::daemon::service` called directly. The
//! branches tested here (not enrolled, a time budget spent while frames
//! pass, lockout after repeated impostor attempts) are the ones the
//! end-to-end test (tests/daemon_e2e.rs) only reaches through the socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use facegate::daemon::service::{self, Decision, ServiceError};
use facegate::daemon::{self, Overrides, Shared};
use facegate::protocol::{DenyReason, EnrollSource};

const UNMASKED: f32 = 0.50;

use common::photo;

use common::inline;

/// Show `img` to the replay camera and let it move on.
fn show(cam: &Path, img: &Path) {
    common::show(cam, img, Duration::from_millis(700));
}

/// A daemon's shared state on a replay camera at 2 fps that needs 5 passing
/// frames of 5 (so a short budget runs out while frames pass), and locks a
/// user out after one free failure.
fn open(dir: &Path) -> (Arc<Shared>, PathBuf) {
    let cam = dir.join("cam");
    std::fs::create_dir(&cam).unwrap();
    show(&cam, &photo("skimage/coffee.png"));
    let sh = open_with(
        dir,
        &common::models_dir(),
        &cam,
        &format!(
            r#"[thresholds]
unmasked = {UNMASKED}
masked = 0.55
[decision]
min_frames = 5
max_frames = 5
[lockout]
free_failures = 1
base_delay_ms = 60000
[enroll]
synthetic_masks = []
"#
        ),
    );
    daemon::start_cameras(&sh).unwrap();
    (sh, cam)
}

/// A daemon's shared state from a config of `extra` sections over the common
/// part: unused socket, state in `dir`, `models`, a 2-fps replay of `cam`.
fn open_with(dir: &Path, models: &Path, cam: &Path, extra: &str) -> Arc<Shared> {
    open_with_models(dir, models, cam, "", extra)
}

/// [`open_with`] with `models_extra` lines in `[models]`.
fn open_with_models(
    dir: &Path,
    models: &Path,
    cam: &Path,
    models_extra: &str,
    extra: &str,
) -> Arc<Shared> {
    let cfg = format!(
        r#"
[daemon]
socket = "{sock}"
state_dir = "{state}"
[models]
dir = "{models}"
{models_extra}
[camera]
kind = "replay"
replay = ["{cam}"]
fps = 2
{extra}"#,
        sock = dir.join("unused.sock").display(),
        state = dir.join("state").display(),
        models = models.display(),
        cam = cam.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, cfg).unwrap();
    let cfg = daemon::load_config(&path, true, &Overrides::default()).unwrap();
    daemon::open(cfg, path, true).unwrap()
}

fn deny(d: &Decision) -> (DenyReason, Option<f32>, u32, Option<u64>) {
    match d {
        Decision::Deny {
            reason,
            best_score,
            frames,
            retry_after_ms,
            ..
        } => (*reason, *best_score, *frames, *retry_after_ms),
        Decision::Unlock { .. } => panic!("expected a denial, got {d:?}"),
    }
}

#[test]
fn service_branches_without_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (sh, cam) = open(dir.path());

    // Not enrolled: answered at once, without looking at the camera.
    let d = service::verify(&sh, "nobody-here", 1000).unwrap();
    assert_eq!(deny(&d), (DenyReason::NotEnrolled, None, 0, None));

    // Enrolment from photos: a photo without a face is rejected, not fatal.
    let r = service::enroll(
        &sh,
        "A",
        None,
        EnrollSource::Images {
            images: vec![
                inline("face_recognition/obama.jpg"),
                inline("face_recognition/obama2.jpg"),
                inline("skimage/coffee.png"),
            ],
        },
    )
    .unwrap();
    assert_eq!((r.unmasked, r.synthetic_masked), (2, 0), "{r:?}");
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    // Nothing usable at all is a typed quality error.
    let e = service::enroll(
        &sh,
        "C",
        None,
        EnrollSource::Images {
            images: vec![inline("skimage/coffee.png")],
        },
    )
    .unwrap_err();
    assert!(matches!(e, ServiceError::Quality(_)), "{e:?}");

    // Identification (issue 15): the bundle's table at N = the users, or
    // a refusal naming why (this config pins no [identify] thresholds).
    let st = service::status(&sh);
    if sh.active().manifest_identify.is_some() {
        assert!(
            st.identify_unmasked.is_some() && st.identify_masked.is_some(),
            "{st:?}"
        );
        let n = format!("for {} enrolled", st.users);
        assert!(st.users >= 1 && st.identify_state.contains(&n), "{st:?}");
        // Never below the 1:1 thresholds of this config.
        assert!(st.identify_unmasked.unwrap() >= UNMASKED, "{st:?}");
    } else {
        assert_eq!((st.identify_unmasked, st.identify_masked), (None, None));
        assert!(
            st.identify_state
                .starts_with("uncalibrated for identification"),
            "{st:?}"
        );
        let e = service::identify(&sh, 500).unwrap_err();
        assert!(matches!(e, ServiceError::Identify(_)), "{e:?}");
    }
    let users = service::list(&sh).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!((users[0].name.as_str(), users[0].unmasked), ("A", 2));

    // A in front of the camera, but the budget (1.5 s at 2 fps) ends before
    // the 5 passing frames the decision needs: a denial that is not
    // evidence of an impostor, so it never counts towards the lockout.
    show(&cam, &photo("face_recognition/obama3.jpg"));
    for attempt in 0..3 {
        let d = service::verify(&sh, "A", 1500).unwrap();
        let (reason, best, frames, retry) = deny(&d);
        assert_eq!(reason, DenyReason::NoMatch, "attempt {attempt}: {d:?}");
        assert!(frames >= 1, "attempt {attempt}: {d:?}");
        assert!(best.unwrap() >= UNMASKED, "attempt {attempt}: {d:?}");
        assert_eq!(retry, None, "attempt {attempt}: {d:?}");
    }

    // Someone else: the first failure is free, the second locks A out, and
    // from then on verify answers at once that A is locked out.
    show(&cam, &photo("face_recognition/biden.jpg"));
    let (reason, best, _, retry) = deny(&service::verify(&sh, "A", 1200).unwrap());
    assert_eq!(reason, DenyReason::NoMatch);
    assert!(best.unwrap() < UNMASKED);
    assert_eq!(retry, None);
    let (reason, _, _, retry) = deny(&service::verify(&sh, "A", 1200).unwrap());
    assert_eq!(reason, DenyReason::NoMatch);
    assert!(retry.unwrap() > 50_000, "{retry:?}");
    let (reason, best, frames, retry) = deny(&service::verify(&sh, "A", 1200).unwrap());
    assert_eq!((reason, best, frames), (DenyReason::LockedOut, None, 0));
    assert!(retry.unwrap() > 50_000, "{retry:?}");

    // Administration, typed. A: 2 unmasked + 2 periocular templates (the
    // default bundle compares masked probes as periocular crops).
    assert_eq!(service::remove(&sh, "A").unwrap(), 4);
    assert!(service::list(&sh).unwrap().is_empty());
    let e = service::import(&sh, "not base64!", true).unwrap_err();
    assert!(matches!(e, ServiceError::BadRequest(_)), "{e:?}");
}

/// A models folder whose default embedder's manifest carries the given
/// `[thresholds]` (model and detector linked from the real bundles, so the
/// sha256 checks still pass).
fn models_with_thresholds(dir: &Path, thresholds: toml::Table) -> PathBuf {
    let src = common::models_dir().join("bundles");
    let out = dir.join("models");
    let bundles = out.join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let det = facegate::bundle::DEFAULT_DETECTOR;
    std::os::unix::fs::symlink(src.join(det), bundles.join(det)).unwrap();
    let emb = facegate::bundle::DEFAULT_EMBEDDER;
    std::fs::create_dir(bundles.join(emb)).unwrap();
    let mut m: toml::Table =
        toml::from_str(&std::fs::read_to_string(src.join(emb).join("manifest.toml")).unwrap())
            .unwrap();
    let file = m["model"]["file"].as_str().unwrap().to_string();
    std::os::unix::fs::symlink(src.join(emb).join(&file), bundles.join(emb).join(&file)).unwrap();
    m.insert("thresholds".into(), toml::Value::Table(thresholds));
    std::fs::write(
        bundles.join(emb).join("manifest.toml"),
        toml::to_string(&m).unwrap(),
    )
    .unwrap();
    out
}

/// Issue 15: identify's thresholds follow the number of enrolled people
/// through the manifest's identification table, and identification is
/// refused once the gallery outgrows it (and allowed again after a removal).
#[test]
fn identification_thresholds_follow_the_gallery_size() {
    let dir = tempfile::tempdir().unwrap();
    let thresholds: toml::Table = toml::from_str(
        r#"
status = "calibrated"
unmasked = 0.2
masked = 0.2
identify_far = [1e-1, 1e-2, 1e-3]
identify_unmasked = [0.3, 0.4, 0.5]
identify_masked = [0.25, 0.35, 0.45]
"#,
    )
    .unwrap();
    let models = models_with_thresholds(dir.path(), thresholds);
    let cam = dir.path().join("cam");
    std::fs::create_dir(&cam).unwrap();
    show(&cam, &photo("skimage/coffee.png"));
    let sh = open_with(dir.path(), &models, &cam, "[identify]\nfpir = 1e-3\n");
    assert!(sh.active().manifest_identify.is_some());
    let ident = |sh: &Shared| {
        let s = service::status(sh);
        (s.identify_unmasked, s.identify_masked, s.identify_state)
    };
    // Nobody enrolled: the first level (nothing can be misidentified).
    let (u, m, state) = ident(&sh);
    assert_eq!((u, m), (Some(0.3), Some(0.25)), "{state}");
    assert!(state.contains("for 0 enrolled (at most 1)"), "{state}");
    let enroll = |user: &str, img: &str| {
        service::enroll(
            &sh,
            user,
            None,
            EnrollSource::Images {
                images: vec![inline(img)],
            },
        )
        .unwrap()
    };
    // One person: FAR 1e-3 per person for FPIR 1e-3, the last level.
    enroll("A", "face_recognition/obama.jpg");
    let (u, m, state) = ident(&sh);
    assert_eq!((u, m), (Some(0.5), Some(0.45)), "{state}");
    // Two: the calibration cannot vouch for 5e-4: refused, with the reason.
    enroll("B", "face_recognition/biden.jpg");
    let (u, m, state) = ident(&sh);
    assert_eq!((u, m), (None, None), "{state}");
    assert!(
        state.starts_with("identification refused: 2 people enrolled")
            && state.contains("at most 1"),
        "{state}"
    );
    let e = service::identify(&sh, 500).unwrap_err();
    assert!(matches!(e, ServiceError::Identify(_)), "{e:?}");
    // Back to one.
    service::remove(&sh, "B").unwrap();
    assert_eq!(ident(&sh).0, Some(0.5));
}

/// Camera frames are tracked between whole-frame searches when
/// `[models] track_every` asks (the default), never otherwise, and the
/// decision is the same either way.
#[test]
fn camera_frames_are_tracked_between_searches() {
    for (models_extra, tracked) in [("", 2), ("track_every = 0", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let cam = dir.path().join("cam");
        std::fs::create_dir(&cam).unwrap();
        show(&cam, &photo("face_recognition/obama3.jpg"));
        let sh = open_with_models(
            dir.path(),
            &common::models_dir(),
            &cam,
            models_extra,
            &format!(
                "[thresholds]\nunmasked = {UNMASKED}\nmasked = 0.55\n\
                 [decision]\nmin_frames = 3\nmax_frames = 3\n[enroll]\nsynthetic_masks = []\n"
            ),
        );
        daemon::start_cameras(&sh).unwrap();
        common::enroll_two_photos(&sh, "A");
        // Three frames at 2 fps: the first searched whole, the next two
        // followed in the face's region.
        match service::verify(&sh, "A", 10_000).unwrap() {
            Decision::Unlock { frames, stages, .. } => {
                assert_eq!(frames, 3);
                assert_eq!(stages.tracked, tracked, "{models_extra:?}: {stages:?}");
            }
            d => panic!("{models_extra:?}: {d:?}"),
        }
    }
}
