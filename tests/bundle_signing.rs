//! Signed bundles (issue 15 §2, docs/SIGNING.md): each way a signature can
//! be wrong is refused with its own error, on real bundles copied from
//! models/out and signed here with keys made by the test (models/out's own
//! bundles may or may not be signed). Then the same through facegated
//! --check-config and `facegate models`, config to refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use facegate::bundle::sign::{self, PublicKey, SignError, Status, TrustPolicy, SIG_FILE};
use facegate::bundle::{sha256_hex, Bundle, BundleError};

const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];
const DETECTOR: &str = "retinaface-mnet025";
/// The smallest embedder (1.7 MB), for the daemon's check.
const EMBEDDER: &str = "mobilefacenet-int8-qlinear";

fn key(seed: &[u8; 32]) -> PublicKey {
    sign::public_key(seed)
}

fn requiring(seeds: &[[u8; 32]]) -> TrustPolicy {
    TrustPolicy {
        trusted_keys: seeds.iter().map(key).collect(),
        allow_unsigned: false,
    }
}

/// A models folder in a tempdir with real copies (never hard links: models/out's
/// files may be links into the build cache) of `names`, unsigned.
fn scratch_models(names: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    for name in names {
        let src = common::models_dir().join("bundles").join(name);
        let dst = models.join("bundles").join(name);
        fs::create_dir_all(&dst).unwrap();
        for f in ["manifest.toml", "model.onnx"] {
            fs::copy(src.join(f), dst.join(f)).unwrap();
        }
    }
    (tmp, models)
}

fn sign_dir(dir: &Path, seed: &[u8; 32]) {
    let manifest = fs::read(dir.join("manifest.toml")).unwrap();
    fs::write(dir.join(SIG_FILE), sign::sign(seed, &manifest).to_text()).unwrap();
}

fn signed_detector(seed: &[u8; 32]) -> (tempfile::TempDir, PathBuf) {
    let (t, models) = scratch_models(&[DETECTOR]);
    let dir = models.join("bundles").join(DETECTOR);
    sign_dir(&dir, seed);
    (t, dir)
}

fn sign_error(err: BundleError) -> SignError {
    match err {
        BundleError::Signature { source, .. } => source,
        other => panic!("expected a signature error, got: {other}"),
    }
}

#[test]
fn a_signed_bundle_opens_with_its_key_trusted() {
    let (_t, dir) = signed_detector(&KEY_A);
    let (b, st) = Bundle::open_trusted(&dir, &requiring(&[KEY_B, KEY_A])).unwrap();
    assert_eq!(st, Status::Trusted(key(&KEY_A)));
    assert_eq!(b.name(), DETECTOR);
    // Reported the same way without a policy applied.
    assert_eq!(
        Bundle::open(&dir).unwrap().signature_status(&[]),
        Ok(Status::Untrusted(key(&KEY_A)))
    );
}

#[test]
fn tampered_manifest_is_refused() {
    let (_t, dir) = signed_detector(&KEY_A);
    let m = fs::read_to_string(dir.join("manifest.toml")).unwrap();
    // A change that keeps the manifest valid: only the signature can tell.
    let changed = m.replacen("score_threshold = ", "score_threshold = 0.0 # ", 1);
    assert_ne!(changed, m);
    fs::write(dir.join("manifest.toml"), changed).unwrap();
    Bundle::open(&dir).unwrap(); // still a valid bundle by size and sha256
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    let msg = err.to_string();
    assert_eq!(sign_error(err), SignError::Invalid { key: key(&KEY_A) });
    assert!(msg.contains("changed after it was signed"), "{msg}");
    assert!(msg.contains(DETECTOR), "{msg}");
    // allow_unsigned does not let a broken signature through.
    let lax = TrustPolicy {
        allow_unsigned: true,
        ..requiring(&[KEY_A])
    };
    assert!(matches!(
        Bundle::open_trusted(&dir, &lax).map_err(sign_error),
        Err(SignError::Invalid { .. })
    ));
}

#[test]
fn tampered_model_is_refused() {
    let (_t, dir) = signed_detector(&KEY_A);
    let mut bytes = fs::read(dir.join("model.onnx")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    fs::write(dir.join("model.onnx"), &bytes).unwrap();
    // The signed manifest still pins the old sha256: the checksum refuses.
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    assert!(matches!(err, BundleError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("tampered"), "{err}");
}

#[test]
fn a_swapped_model_with_a_matching_manifest_is_refused() {
    // The attack signing is for: whoever can write both files swaps the model
    // and fixes the manifest's size and sha256 to match.
    let (_t, dir) = signed_detector(&KEY_A);
    let other = b"not the signed model".to_vec();
    let m = fs::read_to_string(dir.join("manifest.toml")).unwrap();
    let old = Bundle::open(&dir).unwrap().manifest.model;
    let m = m.replace(&old.sha256, &sha256_hex(&other)).replace(
        &format!("bytes = {}", old.bytes),
        &format!("bytes = {}", other.len()),
    );
    fs::write(dir.join("manifest.toml"), m).unwrap();
    fs::write(dir.join("model.onnx"), &other).unwrap();
    Bundle::open(&dir).unwrap(); // consistent, so the sha256 alone cannot tell
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    assert_eq!(sign_error(err), SignError::Invalid { key: key(&KEY_A) });
}

#[test]
fn wrong_key_is_refused() {
    let (_t, dir) = signed_detector(&KEY_B);
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(sign_error(err), SignError::UntrustedKey { key: k, .. } if k == key(&KEY_B)),
        "{msg}"
    );
    assert!(msg.contains("not in [models] trusted_keys"), "{msg}");
    assert!(msg.contains(&key(&KEY_A).to_string()), "{msg}");
}

#[test]
fn missing_signature_is_refused() {
    let (_t, models) = scratch_models(&[DETECTOR]);
    let dir = models.join("bundles").join(DETECTOR);
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    let msg = err.to_string();
    assert_eq!(sign_error(err), SignError::Missing);
    assert!(
        msg.contains("not signed") && msg.contains("manifest.sig"),
        "{msg}"
    );
}

#[test]
fn malformed_signature_file_is_refused() {
    let (_t, dir) = signed_detector(&KEY_A);
    fs::write(dir.join(SIG_FILE), "key = \"ed25519:AAAA\"\n").unwrap();
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    assert!(
        matches!(sign_error(err), SignError::Malformed(_)),
        "a broken manifest.sig is its own error"
    );
    fs::write(dir.join(SIG_FILE), vec![b'#'; 5000]).unwrap();
    let err = Bundle::open_trusted(&dir, &requiring(&[KEY_A])).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn allow_unsigned_admits_unsigned_and_untrusted_bundles() {
    let lax = TrustPolicy {
        allow_unsigned: true,
        ..requiring(&[KEY_A])
    };
    let (_t, models) = scratch_models(&[DETECTOR]);
    let dir = models.join("bundles").join(DETECTOR);
    assert_eq!(
        Bundle::open_trusted(&dir, &lax).unwrap().1,
        Status::Unsigned
    );
    sign_dir(&dir, &KEY_B);
    assert_eq!(
        Bundle::open_trusted(&dir, &lax).unwrap().1,
        Status::Untrusted(key(&KEY_B))
    );
}

fn facegated_check(models: &Path, config_models: &str) -> (bool, String) {
    let cfg = models.parent().unwrap().join("config.toml");
    fs::write(
        &cfg,
        format!(
            "[models]\ndir = \"{}\"\nembedder = \"{EMBEDDER}\"\ndetector = \"{DETECTOR}\"\n{config_models}",
            models.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_facegated"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn facegated_check_config_enforces_trusted_keys() {
    let (_t, models) = scratch_models(&[DETECTOR, EMBEDDER]);
    let trusted = format!("trusted_keys = [\"{}\"]\n", key(&KEY_A));
    // Unsigned bundles: refused once a key is listed, with the bundle named.
    let (ok, text) = facegated_check(&models, &trusted);
    assert!(!ok, "{text}");
    assert!(
        text.contains("not signed") && text.contains(DETECTOR),
        "{text}"
    );
    // ... loaded with a warning when allowed.
    let (ok, text) = facegated_check(&models, &format!("{trusted}allow_unsigned = true\n"));
    assert!(ok, "{text}");
    assert!(
        text.contains("bundle embedder mobilefacenet-int8-qlinear: unsigned"),
        "{text}"
    );
    assert!(text.contains("warning: detector bundle"), "{text}");
    // Signed by the trusted key: reported as such.
    for n in [DETECTOR, EMBEDDER] {
        sign_dir(&models.join("bundles").join(n), &KEY_A);
    }
    let (ok, text) = facegated_check(&models, &trusted);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "bundle embedder {EMBEDDER}: signed by {} (trusted)",
            key(&KEY_A)
        )),
        "{text}"
    );
    // Signed by another key: refused, naming both keys.
    sign_dir(&models.join("bundles").join(EMBEDDER), &KEY_B);
    let (ok, text) = facegated_check(&models, &trusted);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&key(&KEY_B).to_string()) && text.contains("not in [models] trusted_keys"),
        "{text}"
    );
    // A malformed key in the config is a config error naming the key.
    let (ok, text) = facegated_check(&models, "trusted_keys = [\"ed25519:xyz\"]\n");
    assert!(!ok && text.contains("models.trusted_keys[0]"), "{text}");
}

#[test]
fn facegate_models_shows_signatures_and_fails_refused_bundles() {
    let (_t, models) = scratch_models(&[DETECTOR, EMBEDDER]);
    sign_dir(&models.join("bundles").join(DETECTOR), &KEY_A);
    let run = |extra: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
            .arg("--models")
            .arg(&models)
            .arg("models")
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // No policy: who signed, nothing enforced.
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("signature") && text.contains("unsigned"),
        "{text}"
    );
    assert!(text.contains(&key(&KEY_A).short()), "{text}");
    // With a trusted key: the unsigned embedder would be refused by facegated.
    let (code, text) = run(&["--trusted-key".into(), key(&KEY_A).to_string()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("trusted ed25519:"), "{text}");
    assert!(text.contains("not signed"), "{text}");
    // A manifest changed after signing fails even without a policy.
    let m = models.join("bundles").join(DETECTOR).join("manifest.toml");
    let text_m = fs::read_to_string(&m).unwrap();
    fs::write(&m, format!("{text_m}\n# edited\n")).unwrap();
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("changed after it was signed"), "{text}");
}
