//! The IR liveness check end to end in the service layer (issue 15 §3):
//! real models, a colour replay camera and an IR replay camera, and
//! `facegate::daemon::service` called directly. The IR frames are a real
//! photo turned into an IR-like frame (grey), and blank or dim frames
//! standing in for a screen (which emits no near-infrared).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use facegate::daemon::service::{self, Decision};
use facegate::daemon::{self, Overrides, Shared};
use facegate::protocol::{DenyReason, LivenessCheck};
use image::{imageops, GrayImage, Luma, RgbImage};

use common::photo;

const UNMASKED: f32 = 0.50;

/// The colour frame: a registry photo of an enrolled person, made small.
fn colour_frame() -> RgbImage {
    let img = image::open(photo("face_recognition/obama3.jpg"))
        .unwrap()
        .to_rgb8();
    imageops::resize(&img, 400, 650, imageops::FilterType::Triangle)
}

fn grey(img: &RgbImage) -> GrayImage {
    image::DynamicImage::ImageRgb8(img.clone()).to_luma8()
}

/// The IR camera seeing `img` scaled by `scale` and placed at `at` on a
/// dark `w`×`h` background (a camera beside the colour one, another lens).
fn ir_view(img: &RgbImage, scale: f32, at: (i64, i64), w: u32, h: u32) -> GrayImage {
    let g = grey(img);
    let (sw, sh) = (
        (g.width() as f32 * scale).round() as u32,
        (g.height() as f32 * scale).round() as u32,
    );
    let small = imageops::resize(&g, sw, sh, imageops::FilterType::Triangle);
    let mut out = GrayImage::from_pixel(w, h, Luma([12]));
    imageops::overlay(&mut out, &small, at.0, at.1);
    out
}

struct Rig {
    dir: tempfile::TempDir,
    cam: PathBuf,
    ir: PathBuf,
    frames: PathBuf,
    sh: Arc<Shared>,
}

/// The daemon's config: replay cameras (colour at 4 fps, IR at 10), fixed
/// thresholds, one passing frame decides, and `liveness` sections.
fn write_config(dir: &Path, cam: &Path, ir: &Path, liveness: &str) -> PathBuf {
    let text = format!(
        r#"
{head}[camera]
kind = "replay"
replay = ["{cam}"]
fps = 4
[camera.ir]
kind = "replay"
replay = ["{ir}"]
fps = 10
reopen_min_ms = 100
reopen_max_ms = 200
[thresholds]
unmasked = {UNMASKED}
masked = 0.55
[identify]
unmasked = {UNMASKED}
masked = 0.55
[decision]
min_frames = 1
max_frames = 3
[lockout]
free_failures = 1000
[enroll]
synthetic_masks = []
{liveness}"#,
        head = common::config_head(dir),
        cam = cam.display(),
        ir = ir.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Rig {
    /// A daemon on a colour camera showing [`colour_frame`] and an IR camera
    /// showing its grey version, with user "A" enrolled from two other photos.
    fn open(liveness: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (cam, ir, frames) = (
            dir.path().join("cam"),
            dir.path().join("ir"),
            dir.path().join("frames"),
        );
        for d in [&cam, &ir, &frames] {
            std::fs::create_dir(d).unwrap();
        }
        let colour = colour_frame();
        colour.save(frames.join("colour.png")).unwrap();
        common::show(&cam, &frames.join("colour.png"), Duration::ZERO);
        grey(&colour).save(frames.join("ir.png")).unwrap();
        common::show(&ir, &frames.join("ir.png"), Duration::ZERO);
        let path = write_config(dir.path(), &cam, &ir, liveness);
        let cfg = daemon::load_config(&path, true, &Overrides::default()).unwrap();
        let sh = daemon::open(cfg, path, true).unwrap();
        daemon::start_cameras(&sh).unwrap();
        common::enroll_two_photos(&sh, "A");
        Rig {
            dir,
            cam,
            ir,
            frames,
            sh,
        }
    }

    /// Rewrite the config and reload it as SIGHUP does.
    fn reload(&self, liveness: &str) {
        write_config(self.dir.path(), &self.cam, &self.ir, liveness);
        self.sh.reload();
    }

    fn show_ir(&self, name: &str, img: GrayImage) {
        let p = self.frames.join(format!("{name}.png"));
        img.save(&p).unwrap();
        common::show(&self.ir, &p, Duration::from_millis(700));
    }
}

fn unlocked(d: &Decision) -> &[LivenessCheck] {
    match d {
        Decision::Unlock { liveness, .. } => liveness,
        Decision::Deny { .. } => panic!("expected an unlock, got {d:?}"),
    }
}

/// Denied for liveness, after the face matched: the failed check.
fn refused(d: &Decision) -> &LivenessCheck {
    match d {
        Decision::Deny {
            reason: DenyReason::Liveness,
            best_score: Some(s),
            liveness,
            ..
        } if *s >= UNMASKED && liveness.len() == 1 && !liveness[0].passed => &liveness[0],
        _ => panic!("expected a liveness denial of a matching face, got {d:?}"),
    }
}

const IR: &str = "[liveness]\npam = \"ir\"\ndoor = \"ir\"\n";

#[test]
fn a_live_ir_face_unlocks_and_a_screen_does_not() {
    let rig = Rig::open(IR);
    let sh = &rig.sh;
    assert_eq!(
        service::status(sh).liveness,
        "verify: ir, door and identify: ir"
    );

    // The IR camera sees the same face (grey): verify and identify unlock,
    // and say which check ran.
    let d = service::verify(sh, "A", 4000).unwrap();
    let live = unlocked(&d);
    assert_eq!(live.len(), 1, "{d:?}");
    assert!(live[0].check == "ir" && live[0].passed, "{d:?}");
    assert!(live[0].detail.starts_with("IR face in place"), "{d:?}");
    if let Decision::Unlock { stages, .. } = &d {
        assert!(stages.liveness_ms > 0.0, "{stages:?}");
        eprintln!(
            "live: {} ({})",
            live[0].detail,
            facegate::protocol::stages_line(stages)
        );
    }
    let d = service::identify(sh, 4000).unwrap();
    assert!(unlocked(&d)[0].passed, "{d:?}");

    // A screen replay: the colour camera sees the face, the IR camera a
    // black screen. Refused, for both services, saying why.
    rig.show_ir("black", GrayImage::new(400, 650));
    let d = service::verify(sh, "A", 4000).unwrap();
    let c = refused(&d);
    assert!(c.detail.starts_with("no face in the IR frame"), "{c:?}");
    eprintln!("black: {}", c.detail);
    refused(&service::identify(sh, 4000).unwrap());

    // A dim screen with a faint face on it: no face found, or one too dark
    // for skin.
    let dim = GrayImage::from_fn(400, 650, {
        let g = grey(&colour_frame());
        move |x, y| Luma([g.get_pixel(x, y)[0] / 12])
    });
    rig.show_ir("dim", dim);
    let c = refused(&service::verify(sh, "A", 4000).unwrap()).clone();
    assert!(
        c.detail.starts_with("no face in the IR frame")
            || c.detail.starts_with("IR face region too dark or flat"),
        "{c:?}"
    );
    eprintln!("dim: {}", c.detail);

    // Door events report the check: a subscriber gets the arrival with it.
    rig.show_ir("live", grey(&colour_frame()));
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    sh.subscribers.lock().unwrap().push((1, tx));
    daemon::door::spawn_door_loop(sh.clone()).unwrap();
    let ev = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(ev.user, "A");
    assert!(ev.liveness.len() == 1 && ev.liveness[0].passed, "{ev:?}");

    // The IR camera gone: refused (fails closed), not unlocked.
    std::fs::remove_dir_all(&rig.ir).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let c = refused(&service::verify(sh, "A", 4000).unwrap()).clone();
    assert!(c.detail.contains("IR camera"), "{c:?}");
    eprintln!("gone: {}", c.detail);

    // Policy off (reloaded): the same black IR view no longer matters, and
    // no check is reported.
    std::fs::create_dir(&rig.ir).unwrap();
    rig.show_ir("black", GrayImage::new(400, 650));
    rig.reload("[liveness]\npam = \"off\"\ndoor = \"ir\"\n");
    assert_eq!(
        service::status(sh).liveness,
        "verify: off, door and identify: ir"
    );
    let d = service::verify(sh, "A", 4000).unwrap();
    assert!(unlocked(&d).is_empty(), "{d:?}");
    refused(&service::identify(sh, 4000).unwrap());
}

#[test]
fn calibration_measures_the_geometry_that_then_lets_the_face_through() {
    // The IR camera's view: 0.6 times as large, 250 px right and 120 px
    // down of where the colour camera has it.
    let (scale, shift) = (0.6f32, (250i64, 120i64));
    let rig = Rig::open(IR);
    let sh = &rig.sh;
    rig.show_ir("offset", ir_view(&colour_frame(), scale, shift, 640, 640));

    // With the default geometry the face is not where it should be.
    let c = refused(&service::verify(sh, "A", 4000).unwrap()).clone();
    assert!(c.detail.starts_with("no face in the IR frame"), "{c:?}");

    let cal = facegate::daemon::liveness::calibrate(sh, 4, 10_000).unwrap();
    assert!(
        cal.frames >= 2 && cal.points == 5 * cal.frames as usize,
        "{cal:?}"
    );
    for a in 0..2 {
        assert!((cal.scale[a] - scale).abs() < 0.1, "{cal:?}");
    }
    // Where the fitted geometry puts the colour face's centre vs the truth.
    let faces = sh.active().engine.detector.detect(&colour_frame()).unwrap();
    let d = faces[0].bbox;
    let centre = [(d[0] + d[2]) / 2.0, (d[1] + d[3]) / 2.0];
    let shifts = [shift.0 as f32, shift.1 as f32];
    for (a, c) in centre.iter().enumerate() {
        let fitted = cal.scale[a] * c + cal.offset[a];
        let truth = scale * c + shifts[a];
        assert!(
            (fitted - truth).abs() < 8.0,
            "axis {a}: {fitted} vs {truth}, {cal:?}"
        );
    }
    assert!(cal.rms_px < 5.0, "{cal:?}");
    eprintln!("calibration: {cal:?}");

    // The measured geometry in the config: the face passes again.
    rig.reload(&format!(
        "{IR}[liveness.ir]\nscale = [{}, {}]\noffset = [{}, {}]\n",
        cal.scale[0], cal.scale[1], cal.offset[0], cal.offset[1]
    ));
    let d = service::verify(sh, "A", 4000).unwrap();
    assert!(
        unlocked(&d)[0].detail.starts_with("IR face in place"),
        "{d:?}"
    );

    // Nobody in view of the IR camera: calibration says why it cannot fit.
    rig.show_ir("black", GrayImage::new(640, 640));
    let e = facegate::daemon::liveness::calibrate(sh, 3, 5_000).unwrap_err();
    assert!(
        e.to_string()
            .contains("0 of 3 frames had one face in both cameras"),
        "{e}"
    );
}

#[test]
fn the_rgb_model_runs_beside_the_ir_check_and_a_low_score_is_refused() {
    // Both checks on verify, the RGB one alone on the door; the score a
    // face needs first below, then above, what this photo gets.
    let both = |min: f32| {
        format!(
            "[liveness]\npam = \"ir+rgb\"\ndoor = \"rgb\"\n[liveness.rgb]\nbundle = \"antispoof-rgb\"\nmin_score = {min}\n"
        )
    };
    let rig = Rig::open(&both(0.01));
    let sh = &rig.sh;
    assert_eq!(
        service::status(sh).liveness,
        "verify: ir+rgb, door and identify: rgb"
    );
    let d = service::verify(sh, "A", 4000).unwrap();
    let live = unlocked(&d);
    let names: Vec<&str> = live.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(names, ["ir", "rgb"], "{d:?}");
    assert!(live.iter().all(|c| c.passed), "{d:?}");
    let score: f32 = live[1]
        .detail
        .strip_prefix("score ")
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {:?}", live[1].detail));
    assert!(score > 0.01 && score < 1.0, "{score}");
    eprintln!("rgb: {}", live[1].detail);
    let d = service::identify(sh, 4000).unwrap();
    let live = unlocked(&d);
    assert!(live.len() == 1 && live[0].check == "rgb", "{d:?}");

    // Above this face's score: refused for liveness with the RGB check
    // failed and the IR one passed, both reported.
    rig.reload(&both((score + 0.01).min(0.99)));
    match service::verify(sh, "A", 4000).unwrap() {
        Decision::Deny {
            reason: DenyReason::Liveness,
            liveness,
            ..
        } => {
            assert_eq!(liveness.len(), 2, "{liveness:?}");
            assert!(liveness[0].passed && !liveness[1].passed, "{liveness:?}");
            assert!(
                liveness[1].detail.contains("looks like a photo"),
                "{liveness:?}"
            );
        }
        d => panic!("expected a liveness denial, got {d:?}"),
    }
    refused(&service::identify(sh, 4000).unwrap());

    // A bundle that is not an anti-spoofing model: the reload is refused
    // and the running models stay.
    let before = service::status(sh).liveness;
    write_config(
        rig.dir.path(),
        &rig.cam,
        &rig.ir,
        "[liveness]\ndoor = \"rgb\"\n[liveness.rgb]\nbundle = \"mobilefacenet-fp32\"\n",
    );
    let e = daemon::load_config(
        &rig.dir.path().join("config.toml"),
        true,
        &Overrides::default(),
    )
    .and_then(|c| daemon::active::build(&c, &rig.dir.path().join("state"), None).map(|_| ()))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("anti-spoofing") && e.contains("antispoof"),
        "{e}"
    );
    assert_eq!(service::status(sh).liveness, before);
}
