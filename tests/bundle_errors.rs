//! Every way a bundle can be broken gives its own clear error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::fs;
use std::path::Path;

use facegate::bundle::{sha256_hex, Bundle, BundleError, Kind};
use facegate::face::embed::{EmbedError, EmbedderOptions, TractEmbedder};

/// Copy a real bundle into a scratch folder we can damage.
fn scratch_copy(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let src = common::models_dir().join("bundles").join(name);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    fs::create_dir(&dst).unwrap();
    for f in ["manifest.toml", "model.onnx"] {
        fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    (tmp, dst)
}

/// Replace the model bytes and make the manifest agree with them (size and sha256).
fn replace_model_consistently(dir: &Path, bytes: &[u8]) {
    let manifest = fs::read_to_string(dir.join("manifest.toml")).unwrap();
    let old = Bundle::open(dir).unwrap().manifest.model;
    let manifest = manifest.replace(&old.sha256, &sha256_hex(bytes)).replace(
        &format!("bytes = {}", old.bytes),
        &format!("bytes = {}", bytes.len()),
    );
    fs::write(dir.join("manifest.toml"), manifest).unwrap();
    fs::write(dir.join("model.onnx"), bytes).unwrap();
}

fn embedder_error(dir: &Path) -> EmbedError {
    let b = Bundle::open(dir).unwrap();
    TractEmbedder::from_bundle(
        &b,
        &EmbedderOptions {
            max_batch: 1,
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap_err()
}

#[test]
fn missing_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Bundle::open(tmp.path().join("nope")).unwrap_err();
    assert!(matches!(err, BundleError::Missing(_)), "{err}");
    assert!(err.to_string().contains("models/build"), "{err}");
    let err = Bundle::open_named(tmp.path(), "../etc").unwrap_err();
    assert!(matches!(err, BundleError::Missing(_)), "{err}");
}

#[test]
fn missing_model_file() {
    let (_t, dir) = scratch_copy("retinaface-mnet025");
    fs::remove_file(dir.join("model.onnx")).unwrap();
    let err = Bundle::open(&dir).unwrap_err();
    assert!(matches!(err, BundleError::Io { .. }), "{err}");
    assert!(err.to_string().contains("model.onnx"), "{err}");
}

#[test]
fn truncated_model() {
    let (_t, dir) = scratch_copy("retinaface-mnet025");
    let bytes = fs::read(dir.join("model.onnx")).unwrap();
    fs::write(dir.join("model.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    let err = Bundle::open(&dir).unwrap_err();
    assert!(matches!(err, BundleError::Size { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn tampered_model() {
    let (_t, dir) = scratch_copy("retinaface-mnet025");
    let mut bytes = fs::read(dir.join("model.onnx")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(dir.join("model.onnx"), &bytes).unwrap();
    let err = Bundle::open(&dir).unwrap_err();
    assert!(matches!(err, BundleError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("tampered"), "{err}");
}

#[test]
fn malformed_manifest() {
    let (_t, dir) = scratch_copy("retinaface-mnet025");
    fs::write(dir.join("manifest.toml"), "schema = 1\nname = [broken").unwrap();
    let err = Bundle::open(&dir).unwrap_err();
    assert!(matches!(err, BundleError::Manifest { .. }), "{err}");
}

#[test]
fn wrong_kind() {
    let (_t, dir) = scratch_copy("retinaface-mnet025");
    let err = Bundle::open_kind(&dir, Kind::Embedder).unwrap_err();
    assert!(matches!(err, BundleError::Kind { .. }), "{err}");
    let b = Bundle::open(&dir).unwrap();
    let err = TractEmbedder::from_bundle(&b, &EmbedderOptions::default()).unwrap_err();
    assert!(
        matches!(err, EmbedError::Bundle(BundleError::Kind { .. })),
        "{err}"
    );
}

#[test]
fn garbage_onnx_with_a_matching_checksum() {
    // The checksum only proves the file is the one the manifest names; a
    // manifest written for garbage must still fail cleanly in the loader.
    let (_t, dir) = scratch_copy("facenet-int8-qdq-pt");
    replace_model_consistently(&dir, b"this is not an onnx protobuf at all \x00\x01\x02");
    let err = embedder_error(&dir);
    assert!(matches!(err, EmbedError::Load { .. }), "{err}");
    assert!(err.to_string().contains("tract cannot load"), "{err}");
}

#[test]
fn model_that_does_not_match_its_manifest() {
    // A real ONNX model, but the detector's: its input is not FaceNet's.
    let (_t, dir) = scratch_copy("facenet-int8-qdq-pt");
    let other =
        fs::read(common::models_dir().join("bundles/retinaface-mnet025/model.onnx")).unwrap();
    replace_model_consistently(&dir, &other);
    let err = embedder_error(&dir);
    assert!(matches!(err, EmbedError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("input"), "{err}");
}

#[test]
fn manifest_with_the_wrong_output_dimension() {
    let (_t, dir) = scratch_copy("facenet-int8-qdq-pt");
    let m = fs::read_to_string(dir.join("manifest.toml")).unwrap();
    fs::write(
        dir.join("manifest.toml"),
        m.replace("dim = 512", "dim = 128"),
    )
    .unwrap();
    let err = embedder_error(&dir);
    assert!(matches!(err, EmbedError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("128"), "{err}");
}

#[test]
fn wrong_crop_size_is_an_error() {
    use facegate::face::embed::Embedder;
    let b = Bundle::open_named(&common::models_dir(), "facenet-int8-qdq-pt").unwrap();
    let e = TractEmbedder::from_bundle(
        &b,
        &EmbedderOptions {
            max_batch: 1,
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let err = e.embed(&image::RgbImage::new(100, 160)).unwrap_err();
    assert!(
        matches!(err, EmbedError::CropSize { width: 100, .. }),
        "{err}"
    );
}
