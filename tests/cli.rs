//! The command-line tools as a user runs them.

mod common;

use std::process::Command;

fn facegate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facegate"));
    c.arg("--models").arg(common::models_dir());
    c
}

#[test]
fn every_binary_has_a_real_help() {
    for (exe, needle) in [
        (env!("CARGO_BIN_EXE_facegate"), "embed"),
        (env!("CARGO_BIN_EXE_facegated"), "socket"),
        (env!("CARGO_BIN_EXE_facegate-unlock"), "PAM_USER"),
    ] {
        let out = Command::new(exe).arg("--help").output().unwrap();
        assert!(out.status.success(), "{exe} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(needle),
            "{exe} --help does not mention {needle}:\n{text}"
        );
    }
}

#[test]
fn embed_prints_one_json_line_per_image_and_reports_failures() {
    let crops = common::models_dir().join("reference/crops");
    let good = crops.join("skimage_astronaut_0.png");
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff\xe0 truncated jpeg").unwrap();
    let wrong_size = common::models_dir().join("photos/skimage/astronaut.png");
    let out = facegate()
        .args(["embed", "--aligned", "--bundle", "facenet-int8-qdq-pt"])
        .arg(&good)
        .arg(&broken)
        .arg(tmp.path().join("missing.png"))
        .arg(&wrong_size)
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["path"], good.to_string_lossy().as_ref());
    let emb = lines[0]["embedding"].as_array().unwrap();
    assert_eq!(emb.len(), 512);
    assert!(lines[0].get("error").is_none());
    for (i, needle) in [(1, "decode"), (2, "open"), (3, "512x512")] {
        assert!(lines[i].get("embedding").is_none());
        let err = lines[i]["error"].as_str().unwrap();
        assert!(err.contains(needle), "line {i}: {err}");
    }
    assert_eq!(lines[4]["embedding"], lines[0]["embedding"]);
}

#[test]
fn embed_with_a_missing_bundle_fails_clearly() {
    let out = facegate()
        .args(["embed", "--aligned", "--bundle", "no-such-bundle", "x.png"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-bundle") && err.contains("models/build"),
        "{err}"
    );
}

#[test]
fn models_lists_and_verifies_every_bundle() {
    let out = facegate().arg("models").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["facenet-fp32", "retinaface-mnet025"] {
        assert!(text.contains(name), "{text}");
    }
    assert!(!text.contains("tampered"), "{text}");
}
