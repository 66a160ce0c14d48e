//! Model upgrade end to end (issue 16 §3): the real `facegated` with signed
//! bundles, the `facegate` command line, a bundle archive carried over with
//! `models pack` / `models install`, the config edited and SIGHUP sent.
//! With `[enroll] keep_crops`, `facegate reenroll` brings the users back
//! and they unlock with the new embedder; without, `status`, `list` and
//! `reenroll` name who must enrol again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use facegate::bundle::sign;
use facegate::protocol::{Client, Request, Response};

const KEY: [u8; 32] = [0x33; 32];
const DETECTOR: &str = "retinaface-mnet025";
const OLD: &str = "mobilefacenet-fp32";
const NEW: &str = "facenet-fp32";

struct Rig {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    keep_crops: bool,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A signed copy of bundle `name` in `dir/<name>`.
fn signed_copy(name: &str, dir: &Path) -> PathBuf {
    let src = common::models_dir().join("bundles").join(name);
    let dst = dir.join(name);
    fs::create_dir_all(&dst).unwrap();
    for f in ["manifest.toml", "model.onnx"] {
        fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let m = fs::read(dst.join("manifest.toml")).unwrap();
    fs::write(dst.join(sign::SIG_FILE), sign::sign(&KEY, &m).to_text()).unwrap();
    dst
}

impl Rig {
    fn new(keep_crops: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models/bundles");
        signed_copy(DETECTOR, &models);
        signed_copy(OLD, &models);
        fs::create_dir(dir.path().join("cam")).unwrap();
        let r = Rig {
            dir,
            daemon: None,
            keep_crops,
        };
        r.show("skimage/coffee.png");
        r.write_config(OLD);
        r
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write_config(&self, embedder: &str) {
        let cfg = format!(
            r#"[daemon]
socket = "{sock}"
state_dir = "{state}"
[models]
dir = "{models}"
embedder = "{embedder}"
trusted_keys = ["{key}"]
allow_unsigned = false
[camera]
kind = "replay"
replay = ["{cam}"]
fps = 10
[thresholds]
unmasked = 0.50
masked = 0.55
[decision]
min_frames = 2
max_frames = 4
[enroll]
keep_crops = {keep}
crops_key = "{crops_key}"
"#,
            sock = self.p("run/facegate.sock").display(),
            state = self.p("state").display(),
            models = self.p("models").display(),
            key = sign::public_key(&KEY),
            cam = self.p("cam").display(),
            keep = self.keep_crops,
            crops_key = self.p("keys/crops.key").display(),
        );
        fs::write(self.p("config.toml"), cfg).unwrap();
    }

    fn show(&self, rel: &str) {
        let img = common::photo(rel);
        let ext = img.extension().unwrap().to_str().unwrap().to_string();
        let tmp = self.p("show.tmp");
        fs::copy(&img, &tmp).unwrap();
        for e in fs::read_dir(self.p("cam")).unwrap() {
            let e = e.unwrap().path();
            if e.extension().and_then(|x| x.to_str()) != Some(ext.as_str()) {
                fs::remove_file(e).unwrap();
            }
        }
        fs::rename(&tmp, self.p("cam").join(format!("frame.{ext}"))).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }

    fn start(&mut self) {
        let t0 = Instant::now();
        let (sock, log) = (self.p("run/facegate.sock"), self.p("daemon.log"));
        let child = self
            .daemon
            .insert(common::spawn_daemon(&self.p("config.toml"), &log));
        common::wait_ready(child, &sock, &log, t0);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.p("daemon.log")).unwrap_or_default()
    }

    /// `facegate ARGS --socket S`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(args)
            .arg("--socket")
            .arg(self.p("run/facegate.sock"))
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str], code: i32) -> String {
        let out = self.cli(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "facegate {args:?}: {text}{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        text
    }

    fn embedder(&self) -> String {
        let mut c = Client::connect(&self.p("run/facegate.sock"), 5000).unwrap();
        match c.call(&Request::Status).unwrap() {
            Response::Status(s) => s.embedder,
            other => panic!("{other:?}"),
        }
    }

    /// SIGHUP, then wait until the log says the reload is done.
    fn sighup(&self) {
        let done = |log: &str| log.matches("configuration reloaded").count();
        let before = done(&self.log());
        let pid = self.daemon.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        let t0 = Instant::now();
        while done(&self.log()) == before {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "no reload: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pack FaceNet (signed) on the "workstation" and install it with the
    /// daemon's config, as on the device.
    fn ship_new_embedder(&self) {
        let src = signed_copy(NEW, &self.p("workstation"));
        let arc = self.p("facenet.tar.gz");
        common::run_ok(
            Command::new(env!("CARGO_BIN_EXE_facegate"))
                .args(["models", "pack"])
                .arg(&src)
                .arg("--out")
                .arg(&arc),
        );
        common::run_ok(
            Command::new(env!("CARGO_BIN_EXE_facegate"))
                .args(["models", "install"])
                .arg(&arc)
                .arg("--config")
                .arg(self.p("config.toml")),
        );
        assert!(self
            .p("models/bundles")
            .join(NEW)
            .join("manifest.sig")
            .exists());
    }

    fn enrol_two(&self) {
        for (user, photos) in [
            ("obama", vec!["obama.jpg", "obama2.jpg"]),
            ("biden", vec!["biden.jpg"]),
        ] {
            let paths: Vec<String> = photos
                .iter()
                .map(|p| {
                    common::photo(&format!("face_recognition/{p}"))
                        .display()
                        .to_string()
                })
                .collect();
            let mut args = vec!["enroll", user];
            args.extend(paths.iter().map(String::as_str));
            self.cli_ok(&args, 0);
        }
    }
}

#[test]
fn upgrade_with_kept_crops_reenrolls_and_unlocks_with_the_new_embedder() {
    let mut rig = Rig::new(true);
    rig.start();
    rig.enrol_two();
    rig.show("face_recognition/obama3.jpg");
    rig.cli_ok(&["verify", "obama"], 0);
    let key = fs::metadata(rig.p("keys/crops.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );

    // The config names FaceNet before it is on the device: SIGHUP keeps
    // the embedder in use and says why.
    rig.write_config(NEW);
    rig.sighup();
    assert_eq!(rig.embedder(), OLD);
    assert!(
        rig.log().contains("keeping the models in use"),
        "{}",
        rig.log()
    );
    rig.cli_ok(&["verify", "obama"], 0);

    rig.ship_new_embedder();
    rig.sighup();
    assert_eq!(rig.embedder(), NEW, "{}", rig.log());
    let status = rig.cli_ok(&["status"], 0);
    assert!(
        status.contains("MUST RE-ENROL (2 users") && status.contains("biden, obama"),
        "{status}"
    );
    let list = rig.cli_ok(&["list"], 0);
    assert_eq!(list.matches("`facegate reenroll` can").count(), 2, "{list}");
    // Not compared with MobileFaceNet templates: not enrolled (exit 1).
    rig.cli_ok(&["verify", "obama"], 1);

    let out = rig.cli_ok(&["reenroll"], 0);
    assert!(
        out.contains("re-enrolled 2 users") && out.contains(NEW),
        "{out}"
    );
    let status = rig.cli_ok(&["status"], 0);
    assert!(!status.contains("MUST RE-ENROL"), "{status}");
    rig.cli_ok(&["verify", "obama"], 0);
    rig.cli_ok(&["verify", "biden"], 1);
}

#[test]
fn upgrade_without_kept_crops_names_who_must_reenrol() {
    let mut rig = Rig::new(false);
    rig.start();
    rig.enrol_two();
    assert!(!rig.p("keys/crops.key").exists() && !rig.p("state/crops").exists());
    rig.ship_new_embedder();
    rig.write_config(NEW);
    rig.sighup();
    assert_eq!(rig.embedder(), NEW, "{}", rig.log());
    assert!(
        rig.log()
            .contains("users must re-enrol with embedder facenet-fp32"),
        "{}",
        rig.log()
    );
    let status = rig.cli_ok(&["status"], 0);
    assert!(
        status.contains("MUST RE-ENROL (2 users") && status.contains("biden, obama"),
        "{status}"
    );
    let list = rig.cli_ok(&["list"], 0);
    assert_eq!(
        list.matches("MUST RE-ENROL (embedder changed; enrol again)")
            .count(),
        2,
        "{list}"
    );
    let out = rig.cli_ok(&["reenroll"], 1);
    assert!(
        out.contains("no kept crops, must enrol again: biden, obama"),
        "{out}"
    );
    rig.show("face_recognition/obama3.jpg");
    rig.cli_ok(&["verify", "obama"], 1);
    // Enrolling again is the way back.
    let photo = common::photo("face_recognition/obama.jpg");
    rig.cli_ok(&["enroll", "obama", photo.to_str().unwrap()], 0);
    rig.cli_ok(&["verify", "obama"], 0);
    let status = rig.cli_ok(&["status"], 0);
    assert!(
        status.contains("MUST RE-ENROL (1 users") && status.contains(": biden"),
        "{status}"
    );
}
