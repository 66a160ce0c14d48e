//! Bundles with a second model for periocular crops (`[periocular_model]`,
//! docs/TRAINING.md): the pretrained network for whole faces, a trained one
//! for the periocular crops of masked probes and of enrolment. Real models:
//! MobileFaceNet fp32 as the whole-face model and its int8 graph standing in
//! for the periocular one (same input and output, different numbers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use facegate::bundle::{archive, sha256_hex, Bundle, BundleError, Manifest};
use facegate::face::embed::{Embedder, EmbedderOptions, TractEmbedder};

const WHOLE: &str = "mobilefacenet-fp32";
const PERI: &str = "mobilefacenet-int8-qlinear";

fn opts() -> EmbedderOptions {
    EmbedderOptions {
        max_batch: 1,
        threads: 1,
        ..Default::default()
    }
}

/// `WHOLE`'s bundle with `PERI`'s model as its periocular model, in a
/// scratch folder.
fn two_model_bundle() -> (tempfile::TempDir, PathBuf) {
    let src = common::models_dir().join("bundles");
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("models/bundles/two-models");
    fs::create_dir_all(&dst).unwrap();
    fs::copy(src.join(WHOLE).join("model.onnx"), dst.join("model.onnx")).unwrap();
    let peri = fs::read(src.join(PERI).join("model.onnx")).unwrap();
    fs::write(dst.join("periocular.onnx"), &peri).unwrap();
    let manifest = fs::read_to_string(src.join(WHOLE).join("manifest.toml")).unwrap();
    // A [presence] classifier names model.onnx's sha256: still valid here.
    let manifest = manifest.replacen(
        &format!("name = \"{WHOLE}\""),
        "name = \"two-models\"",
        1,
    ) + &format!(
        "\n[periocular_model]\nfile = \"periocular.onnx\"\nsha256 = \"{}\"\nbytes = {}\nformat = \"onnx\"\nprecision = \"int8\"\n",
        sha256_hex(&peri),
        peri.len()
    );
    fs::write(dst.join("manifest.toml"), manifest).unwrap();
    (tmp, dst)
}

fn crop() -> image::RgbImage {
    let r = common::reference();
    let c = r.crops_for(WHOLE)[0];
    image::open(common::crop_path(&c.file)).unwrap().to_rgb8()
}

fn embed(e: &TractEmbedder, c: &image::RgbImage) -> Vec<f32> {
    e.embed(c).unwrap().into_vec()
}

#[test]
fn the_periocular_model_is_loaded_verified_and_used_for_periocular_crops_only() {
    let (_tmp, dir) = two_model_bundle();
    let b = Bundle::open(&dir).unwrap();
    let whole = TractEmbedder::from_bundle(&b, &opts()).unwrap();
    let peri = TractEmbedder::periocular_from_bundle(&b, &opts())
        .unwrap()
        .expect("a periocular model");
    assert_eq!(peri.name(), "two-models+periocular");
    assert_eq!(
        peri.sha256(),
        b.manifest.periocular_model.as_ref().unwrap().sha256
    );

    // Each is its own network: the whole-face one is WHOLE's, the periocular
    // one PERI's, exactly.
    let c = crop();
    let src = common::models_dir();
    let only = |n: &str| {
        TractEmbedder::from_bundle(&Bundle::open_named(&src, n).unwrap(), &opts()).unwrap()
    };
    assert_eq!(embed(&whole, &c), embed(&only(WHOLE), &c));
    assert_eq!(embed(&peri, &c), embed(&only(PERI), &c));
    assert_ne!(embed(&whole, &c), embed(&peri, &c));

    // Without the section there is no periocular model.
    let plain = Bundle::open_named(&src, WHOLE).unwrap();
    assert!(TractEmbedder::periocular_from_bundle(&plain, &opts())
        .unwrap()
        .is_none());
    assert_eq!(plain.identity_sha256(), plain.sha256());
    assert_eq!(plain.model_files().len(), 1);

    // The gallery identity covers both models: another periocular model (or
    // none) is another identity, though model.onnx is the same.
    assert_eq!(b.sha256(), plain.sha256());
    assert_ne!(b.identity_sha256(), plain.identity_sha256());
    assert_eq!(b.identity_sha256().len(), 64);
    assert_eq!(
        b.model_files()
            .iter()
            .map(|(n, d)| (*n, d.len()))
            .collect::<Vec<_>>(),
        vec![
            (
                "model.onnx",
                fs::metadata(dir.join("model.onnx")).unwrap().len() as usize
            ),
            (
                "periocular.onnx",
                fs::metadata(dir.join("periocular.onnx")).unwrap().len() as usize
            ),
        ]
    );

    // The evaluation's model switches network with the crop.
    let m = facegate::eval::extract::Model::load(&dir.join("../.."), "two-models").unwrap();
    assert_eq!(m.sha256, b.sha256());
    let m = m.with_periocular(0.5);
    assert_eq!(m.sha256, peri.sha256());
    assert_eq!(embed(&m.embedder, &c), embed(&peri, &c));
}

fn open_err(dir: &Path) -> BundleError {
    Bundle::open(dir).unwrap_err()
}

#[test]
fn a_damaged_or_missing_periocular_model_is_refused_with_its_name() {
    let (_tmp, dir) = two_model_bundle();
    let p = dir.join("periocular.onnx");
    let good = fs::read(&p).unwrap();

    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0x40;
    fs::write(&p, &bad).unwrap();
    let err = open_err(&dir);
    assert!(matches!(err, BundleError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("periocular.onnx"), "{err}");

    fs::write(&p, &good[..good.len() - 1]).unwrap();
    let err = open_err(&dir);
    assert!(matches!(err, BundleError::Size { .. }), "{err}");

    fs::remove_file(&p).unwrap();
    let err = open_err(&dir);
    assert!(matches!(err, BundleError::Io { .. }), "{err}");
    assert!(err.to_string().contains("periocular.onnx"), "{err}");

    // A periocular model that is not an embedder of the bundle's geometry
    // (FaceNet: 160x160 in, 512-d out) is refused when loaded.
    let facenet = fs::read(common::models_dir().join("bundles/facenet-fp32/model.onnx")).unwrap();
    fs::write(&p, &facenet).unwrap();
    let m = fs::read_to_string(dir.join("manifest.toml")).unwrap();
    let (sha, bytes) = (sha256_hex(&good), good.len());
    let m = m.replace(&sha, &sha256_hex(&facenet)).replace(
        &format!("bytes = {bytes}\n"),
        &format!("bytes = {}\n", facenet.len()),
    );
    fs::write(dir.join("manifest.toml"), m).unwrap();
    let b = Bundle::open(&dir).unwrap();
    let err = TractEmbedder::periocular_from_bundle(&b, &opts()).unwrap_err();
    assert!(err.to_string().contains("two-models+periocular"), "{err}");
}

#[test]
fn the_manifest_section_is_checked() {
    let src = common::models_dir().join("bundles");
    let text = fs::read_to_string(src.join(WHOLE).join("manifest.toml")).unwrap();
    let sha = "ab".repeat(32);
    let section = |file: &str, sha: &str| {
        format!("\n[periocular_model]\nfile = \"{file}\"\nsha256 = \"{sha}\"\nbytes = 10\nformat = \"onnx\"\nprecision = \"fp32\"\n")
    };
    assert!(Manifest::parse(&(text.clone() + &section("periocular.onnx", &sha))).is_ok());
    for (file, sha, want) in [
        ("model.onnx", sha.as_str(), "the model's own file"),
        ("../x.onnx", sha.as_str(), "plain file name"),
        ("manifest.toml", sha.as_str(), "plain file name"),
        ("p.onnx", "xyz", "64 hex digits"),
    ] {
        let err = Manifest::parse(&(text.clone() + &section(file, sha))).unwrap_err();
        assert!(err.contains(want), "{file}: {err}");
    }
    let det = fs::read_to_string(src.join("retinaface-mnet025/manifest.toml")).unwrap();
    let err = Manifest::parse(&(det + &section("p.onnx", &sha))).unwrap_err();
    assert!(err.contains("only an embedder"), "{err}");
}

#[test]
fn an_archive_carries_both_models() {
    let (tmp, dir) = two_model_bundle();
    let arc = tmp.path().join("two.fgbundle");
    archive::pack(&dir, &arc).unwrap();
    let models = tmp.path().join("device");
    let r = archive::install(&arc, &models, None, false).unwrap();
    let b = Bundle::open(&r.dir).unwrap();
    assert_eq!(
        b.identity_sha256(),
        Bundle::open(&dir).unwrap().identity_sha256()
    );
    assert_eq!(
        fs::read(r.dir.join("periocular.onnx")).unwrap(),
        fs::read(dir.join("periocular.onnx")).unwrap()
    );
}

#[test]
fn the_listing_names_both_models() {
    let (_tmp, dir) = two_model_bundle();
    let models = dir.join("../..");
    let out = common::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(["models", "--models"])
            .arg(&models),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let b = Bundle::open(&dir).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("| two-models "))
        .expect("a row");
    let peri = b.manifest.periocular_model.as_ref().unwrap();
    assert!(
        row.contains(&format!(
            "{} + periocular {}",
            &b.manifest.model.sha256[..12],
            &peri.sha256[..12]
        )),
        "{row}"
    );
    let mb = (b.manifest.model.bytes + peri.bytes) as f64 / 1e6;
    assert!(row.contains(&format!("| {mb:.1}")), "{row}");
}
