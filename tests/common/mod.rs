//! Shared helpers for the integration tests: where the model bundles and the
//! pipeline's reference data are.
#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

/// The models folder built by `models/build` ($FACEGATE_MODELS or models/out).
/// The README's test command builds it first; a missing folder is a failure,
/// not a skip, so that CI cannot pass without running the model tests.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("FACEGATE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/out"));
    assert!(
        dir.join("bundles").is_dir(),
        "no model bundles in {} (run models/build, or set FACEGATE_MODELS)",
        dir.display()
    );
    dir
}

/// LFW (FACEGATE_LFW, else ../shared/data/lfw beside the repository) and
/// the models folder (FACEGATE_MODELS, else models/out, else the default
/// location) holding `bundle`, for the tests that need both; None, with a
/// line saying why `test` was skipped, when either is missing.
pub fn lfw_and_models(test: &str, bundle: &str) -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lfw = std::env::var_os("FACEGATE_LFW")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data/lfw"));
    if !lfw.join("pairs.txt").is_file() || !lfw.join("deepfunneled").is_dir() {
        eprintln!(
            "SKIPPED {test}: no LFW copy at {} (pairs.txt + deepfunneled/); set FACEGATE_LFW",
            lfw.display()
        );
        return None;
    }
    let models = std::env::var_os("FACEGATE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let local = root.join("models/out");
            if local.join("bundles").is_dir() {
                local
            } else {
                facegate::bundle::default_models_dir()
            }
        });
    if !models.join("bundles").join(bundle).is_dir() {
        eprintln!(
            "SKIPPED {test}: no bundle {bundle} under {} (models/build; set FACEGATE_MODELS)",
            models.display()
        );
        return None;
    }
    Some((lfw, models))
}

/// The evaluation front end of the LFW tests: the default detector, every
/// core, embeddings cached in FACEGATE_EVAL_CACHE or else in `tmp`.
pub fn lfw_front<'a>(
    lfw: &'a facegate::eval::lfw::Lfw,
    models: &std::path::Path,
    tmp: &std::path::Path,
) -> facegate::eval::extract::Front<'a> {
    let cache = std::env::var_os("FACEGATE_EVAL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    facegate::eval::extract::Front::new(
        lfw,
        models,
        facegate::bundle::DEFAULT_DETECTOR,
        &cache,
        threads,
        None,
    )
    .unwrap()
}

#[derive(Deserialize)]
pub struct Reference {
    pub photos: Vec<Photo>,
    pub crops: Vec<RefCrop>,
}

#[derive(Deserialize)]
pub struct Photo {
    pub photo: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<RefFace>,
}

#[derive(Deserialize)]
pub struct RefFace {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    /// The 160x160 (FaceNet) crop.
    pub crop: Option<String>,
    /// Crop file by crop size ("160", "112"): one per embedder geometry.
    #[serde(default)]
    pub crops: std::collections::BTreeMap<String, String>,
}

impl RefFace {
    /// The pipeline's crop of this face at `size`.
    pub fn crop_of_size(&self, size: u32) -> Option<&str> {
        self.crops.get(&size.to_string()).map(String::as_str)
    }
}

#[derive(Deserialize)]
pub struct RefCrop {
    pub file: String,
    /// Crop side; absent in references written before crops had several sizes.
    #[serde(default = "default_crop_size")]
    pub size: u32,
    /// onnxruntime embeddings of this crop by every bundle of its size.
    pub embeddings: std::collections::BTreeMap<String, Vec<f32>>,
}

fn default_crop_size() -> u32 {
    160
}

impl Reference {
    /// Every embedder bundle with reference embeddings, sorted.
    pub fn bundles(&self) -> Vec<String> {
        let all: std::collections::BTreeSet<&String> = self
            .crops
            .iter()
            .flat_map(|c| c.embeddings.keys())
            .collect();
        all.into_iter().cloned().collect()
    }

    /// The reference crops that carry `bundle`'s embeddings (its crop size).
    pub fn crops_for(&self, bundle: &str) -> Vec<&RefCrop> {
        self.crops
            .iter()
            .filter(|c| c.embeddings.contains_key(bundle))
            .collect()
    }
}

/// `facenet-int8-qlinear` -> `facenet-fp32`: the float model an int8 bundle
/// was quantised from (an fp32 bundle is its own).
pub fn fp32_counterpart(bundle: &str) -> String {
    let family = bundle.split("-int8").next().unwrap_or(bundle);
    let family = family.split("-fp32").next().unwrap_or(family);
    format!("{family}-fp32")
}

pub fn reference() -> Reference {
    let p = models_dir().join("reference/reference.json");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", p.display()))
}

/// The start of a test daemon's config: `[daemon]` with a socket and
/// state dir inside `dir` (the service tests never bind the socket), and
/// `[models]` with the built bundles; `[models]` keys may follow.
pub fn config_head(dir: &std::path::Path) -> String {
    format!(
        "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n[models]\ndir = \"{}\"\n",
        dir.join("unused.sock").display(),
        dir.join("state").display(),
        models_dir().display()
    )
}

pub fn crop_path(file: &str) -> PathBuf {
    models_dir().join("reference/crops").join(file)
}

/// Comma-separated list from an environment variable, if set.
pub fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name).ok().map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
}

/// The `facegate-unlock` binary. It is its own workspace member
/// (crates/facegate-unlock), so Cargo gives this package no
/// `CARGO_BIN_EXE_facegate-unlock`: it is found next to `facegated` in the
/// same target folder, where `cargo test` (every workspace member is a
/// default member) has built it.
pub fn unlock_exe() -> &'static str {
    static EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_facegated")).with_file_name("facegate-unlock");
        assert!(
            exe.is_file(),
            "{} is missing: run the tests from the workspace root (cargo test), or cargo build -p facegate-unlock",
            exe.display()
        );
        exe.to_string_lossy().into_owned()
    })
}

/// Start `facegated --config CONFIG` with its log (RUST_LOG=info) in `log`.
pub fn spawn_daemon(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_facegated"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Wait until the daemon answers `status` on `sock`; fails with its log when
/// it exits or is not ready within 60 s of `t0`. Returns the time since `t0`.
pub fn wait_ready(
    child: &mut std::process::Child,
    sock: &std::path::Path,
    log: &std::path::Path,
    t0: std::time::Instant,
) -> std::time::Duration {
    use facegate::protocol::{Client, Request, Response};
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    loop {
        if let Ok(mut c) = Client::connect(sock, 2000) {
            if let Ok(Response::Status(_)) = c.call(&Request::Status) {
                return t0.elapsed();
            }
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "daemon not ready: {}",
            log()
        );
        if let Some(st) = child.try_wait().unwrap() {
            panic!("daemon exited with {st}: {}", log());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A registry photo fetched by models/build (`photos/<rel>`).
pub fn photo(rel: &str) -> PathBuf {
    models_dir().join("photos").join(rel)
}

/// A registry photo as an inline image of an enrolment request.
pub fn inline(rel: &str) -> facegate::protocol::InlineImage {
    use base64::Engine as _;
    facegate::protocol::InlineImage {
        name: rel.into(),
        data_b64: base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(photo(rel)).unwrap()),
    }
}

/// Enrol `user` through the service layer from the two registry photos of
/// the person the tests' replay cameras show (obama.jpg, obama2.jpg); both
/// must make a template.
pub fn enroll_two_photos(sh: &std::sync::Arc<facegate::daemon::Shared>, user: &str) {
    let r = facegate::daemon::service::enroll(
        sh,
        user,
        None,
        facegate::protocol::EnrollSource::Images {
            images: vec![
                inline("face_recognition/obama.jpg"),
                inline("face_recognition/obama2.jpg"),
            ],
        },
    )
    .unwrap();
    assert_eq!(r.unmasked, 2, "{r:?}");
}

/// Run `cmd` and fail the test with its stderr unless it exits 0.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("run the command");
    assert!(
        out.status.success(),
        "{:?} failed ({}): {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Show `img` to a replay camera whose folder is `cam` (atomic replace of its
/// single frame, other frames removed) and give it `settle` to move on.
pub fn show(cam: &std::path::Path, img: &std::path::Path, settle: std::time::Duration) {
    let ext = img.extension().unwrap().to_str().unwrap();
    let tmp = cam.with_extension("tmp");
    std::fs::copy(img, &tmp).unwrap();
    for e in std::fs::read_dir(cam).unwrap() {
        let e = e.unwrap().path();
        if e.extension().and_then(|x| x.to_str()) != Some(ext) {
            std::fs::remove_file(e).unwrap();
        }
    }
    std::fs::rename(&tmp, cam.join(format!("frame.{ext}"))).unwrap();
    std::thread::sleep(settle);
}
