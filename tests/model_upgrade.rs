//! Model upgrade (issue 16 §3), through the service layer without a socket:
//! real models, a replay camera, `Shared::reload` (what SIGHUP calls).
//!
//! * with `[enroll] keep_crops`, the users enrolled with MobileFaceNet are
//!   re-embedded by `reenroll` with FaceNet and unlock again;
//! * without, the switch names exactly who must re-enrol, and `reenroll`
//!   says it cannot help them;
//! * a reload onto a bundle that does not open keeps the models in use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use facegate::daemon::service::{self, Decision};
use facegate::daemon::{self, reenroll, Overrides, Shared};
use facegate::protocol::{DenyReason, EnrollSource};

use common::{inline, photo};

const OLD: &str = "mobilefacenet-fp32";
const NEW: &str = "facenet-fp32";

/// Show `img` to the replay camera and let it move on.
fn show(cam: &Path, img: &Path) {
    common::show(cam, img, Duration::from_millis(400));
}

/// The config: replay camera at 5 fps, thresholds pinned (FaceNet's bundle
/// is uncalibrated), 2 of 3 frames.
fn write_config(dir: &Path, embedder: &str, extra: &str) -> PathBuf {
    let cfg = format!(
        r#"
{head}embedder = "{embedder}"
[camera]
kind = "replay"
replay = ["{cam}"]
fps = 5
[thresholds]
unmasked = 0.50
masked = 0.55
[decision]
min_frames = 2
max_frames = 3
[enroll]
synthetic_masks = []
{extra}"#,
        head = common::config_head(dir),
        cam = dir.join("cam").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn open(dir: &Path, extra: &str) -> Arc<Shared> {
    let cam = dir.join("cam");
    std::fs::create_dir(&cam).unwrap();
    show(&cam, &photo("skimage/coffee.png"));
    let path = write_config(dir, OLD, extra);
    let cfg = daemon::load_config(&path, true, &Overrides::default()).unwrap();
    let sh = daemon::open(cfg, path, true).unwrap();
    daemon::start_cameras(&sh).unwrap();
    sh
}

fn enroll(sh: &Arc<Shared>, user: &str, photos: &[&str]) {
    let r = service::enroll(
        sh,
        user,
        None,
        EnrollSource::Images {
            images: photos.iter().map(|p| inline(p)).collect(),
        },
    )
    .unwrap();
    assert_eq!(r.unmasked, photos.len(), "{r:?}");
}

fn verify(sh: &Arc<Shared>, dir: &Path, user: &str, img: &str) -> Decision {
    show(&dir.join("cam"), &photo(img));
    service::verify(sh, user, 8000).unwrap()
}

fn unlocked(d: &Decision) -> bool {
    matches!(d, Decision::Unlock { .. })
}

/// SIGHUP's path: edit the config, reload.
fn switch_to(sh: &Shared, dir: &Path, embedder: &str, extra: &str) {
    write_config(dir, embedder, extra);
    sh.reload();
}

fn retired(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gallery.retired-"))
        .collect();
    v.sort();
    v
}

#[test]
fn with_kept_crops_reenroll_brings_everyone_back_with_the_new_embedder() {
    let dir = tempfile::tempdir().unwrap();
    let keep = "keep_crops = true\n";
    let sh = open(dir.path(), keep);
    enroll(
        &sh,
        "obama",
        &["face_recognition/obama.jpg", "face_recognition/obama2.jpg"],
    );
    enroll(&sh, "biden", &["face_recognition/biden.jpg"]);
    // Crops kept, encrypted, with a private key.
    let state = dir.path().join("state");
    let key = std::fs::metadata(state.join("crops.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let crops: Vec<PathBuf> = std::fs::read_dir(state.join("crops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(crops.len(), 2, "{crops:?}");
    for c in &crops {
        let bytes = std::fs::read(c).unwrap();
        assert!(
            !bytes.windows(4).any(|w| w == b"\x89PNG") && !bytes.windows(5).any(|w| w == b"obama")
        );
    }
    let users = service::list(&sh).unwrap();
    assert!(
        users.iter().all(|u| u.kept_crops && !u.must_reenrol),
        "{users:?}"
    );
    assert!(unlocked(&verify(
        &sh,
        dir.path(),
        "obama",
        "face_recognition/obama3.jpg"
    )));

    // Same-embedder reenroll: the kept crops give the templates enrolment gave.
    let before = sh.active().gallery.templates().unwrap();
    let r = reenroll::reenroll(&sh).unwrap();
    assert_eq!(r.users, ["biden", "obama"], "{r:?}");
    let after = sh.active().gallery.templates().unwrap();
    assert_eq!(after.len(), before.len());
    for b in &before {
        let best = after
            .iter()
            .filter(|a| a.user == b.user && a.condition == b.condition)
            .map(|a| {
                a.embedding
                    .iter()
                    .zip(&b.embedding)
                    .map(|(x, y)| x * y)
                    .sum::<f32>()
            })
            .fold(-1.0, f32::max);
        assert!(best > 0.95, "{}: re-embedded crop cosine {best}", b.user);
    }

    // SIGHUP onto FaceNet: the gallery is retired, nobody is compared with
    // MobileFaceNet templates, and both users are named.
    switch_to(&sh, dir.path(), NEW, keep);
    let st = service::status(&sh);
    assert_eq!(st.embedder, NEW);
    assert_eq!(st.must_reenrol, ["biden", "obama"], "{st:?}");
    assert_eq!(st.templates, 0);
    assert_eq!(retired(dir.path()).len(), 1, "{:?}", retired(dir.path()));
    let d = verify(&sh, dir.path(), "obama", "face_recognition/obama3.jpg");
    assert!(
        matches!(
            d,
            Decision::Deny {
                reason: DenyReason::NotEnrolled,
                ..
            }
        ),
        "{d:?}"
    );

    // reenroll: everyone back, with FaceNet templates, and obama unlocks.
    let r = reenroll::reenroll(&sh).unwrap();
    assert_eq!((r.embedder.as_str(), r.users.len()), (NEW, 2), "{r:?}");
    assert!(r.without_crops.is_empty() && r.failed.is_empty(), "{r:?}");
    let st = service::status(&sh);
    assert!(st.must_reenrol.is_empty(), "{st:?}");
    assert_eq!(sh.active().gallery.store().dim(), 512);
    let d = verify(&sh, dir.path(), "obama", "face_recognition/obama3.jpg");
    assert!(unlocked(&d), "{d:?}");
    // …and an impostor does not.
    let d = verify(&sh, dir.path(), "biden", "face_recognition/obama3.jpg");
    assert!(!unlocked(&d), "{d:?}");

    // Removing a user removes their crops.
    service::remove(&sh, "biden").unwrap();
    assert_eq!(std::fs::read_dir(state.join("crops")).unwrap().count(), 1);
}

#[test]
fn without_kept_crops_the_switch_names_who_must_reenrol() {
    let dir = tempfile::tempdir().unwrap();
    let sh = open(dir.path(), "");
    enroll(&sh, "obama", &["face_recognition/obama.jpg"]);
    enroll(&sh, "biden", &["face_recognition/biden.jpg"]);
    assert!(!dir.path().join("state/crops.key").exists());
    assert!(unlocked(&verify(
        &sh,
        dir.path(),
        "obama",
        "face_recognition/obama3.jpg"
    )));

    // A bundle that does not open: the models in use stay.
    switch_to(&sh, dir.path(), "no-such-bundle", "");
    assert_eq!(service::status(&sh).embedder, OLD);
    assert!(retired(dir.path()).is_empty());
    assert!(unlocked(&verify(
        &sh,
        dir.path(),
        "obama",
        "face_recognition/obama3.jpg"
    )));

    switch_to(&sh, dir.path(), NEW, "");
    let st = service::status(&sh);
    assert_eq!(st.embedder, NEW);
    assert_eq!(st.must_reenrol, ["biden", "obama"], "{st:?}");
    let users = service::list(&sh).unwrap();
    assert!(
        users.iter().all(|u| u.must_reenrol && !u.kept_crops),
        "{users:?}"
    );
    let r = reenroll::reenroll(&sh).unwrap();
    assert!(
        r.users.is_empty() && r.without_crops == ["biden", "obama"],
        "{r:?}"
    );

    // Enrolling again is the way back, one user at a time.
    enroll(&sh, "obama", &["face_recognition/obama.jpg"]);
    assert_eq!(service::status(&sh).must_reenrol, ["biden"]);
    assert!(unlocked(&verify(
        &sh,
        dir.path(),
        "obama",
        "face_recognition/obama3.jpg"
    )));

    // Back to MobileFaceNet: FaceNet's gallery is retired in turn (both kept).
    switch_to(&sh, dir.path(), OLD, "");
    assert_eq!(retired(dir.path()).len(), 2);
    assert_eq!(service::status(&sh).must_reenrol, ["biden", "obama"]);
}

/// A start with another embedder than the gallery's (a restart after the
/// config changed) migrates the same way instead of refusing to start.
#[test]
fn a_restart_with_another_embedder_migrates_the_gallery() {
    let dir = tempfile::tempdir().unwrap();
    {
        let sh = open(dir.path(), "");
        enroll(&sh, "obama", &["face_recognition/obama.jpg"]);
    }
    // Let the first instance's threads let go of the gallery.
    std::thread::sleep(Duration::from_millis(500));
    let path = write_config(dir.path(), NEW, "");
    let cfg = daemon::load_config(&path, true, &Overrides::default()).unwrap();
    // --check-config says what the start will do.
    let checked = daemon::check(&cfg).unwrap();
    assert!(
        checked.warnings.iter().any(|w| w.contains(
            "was enrolled with embedder mobilefacenet-fp32 (1 users); with facenet-fp32 it will be retired"
        )),
        "{:?}",
        checked.warnings
    );
    let sh = daemon::open(cfg, path, true).unwrap();
    let st = service::status(&sh);
    assert_eq!(
        (st.embedder.as_str(), st.must_reenrol.clone()),
        (NEW, vec!["obama".to_string()])
    );
    assert_eq!(retired(dir.path()).len(), 1);
}

/// A crops key others can read is refused, and the enrolment adds nothing.
#[test]
fn an_open_crops_key_refuses_the_enrolment_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("crops.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let sh = open(
        dir.path(),
        &format!("keep_crops = true\ncrops_key = \"{}\"\n", key.display()),
    );
    let e = service::enroll(
        &sh,
        "obama",
        None,
        EnrollSource::Images {
            images: vec![inline("face_recognition/obama.jpg")],
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("nothing was enrolled") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(service::list(&sh).unwrap().is_empty());
    assert!(
        !dir.path().join("state/crops").exists()
            || std::fs::read_dir(dir.path().join("state/crops"))
                .unwrap()
                .count()
                == 0
    );
}
