//! The command-line tools as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

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
        (common::unlock_exe(), "PAM_USER"),
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

#[test]
fn detect_prints_faces_and_errors_and_draws() {
    let photos = common::models_dir().join("photos");
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("truncated.jpg");
    let full = std::fs::read(photos.join("face_recognition/obama.jpg")).unwrap();
    std::fs::write(&broken, &full[..full.len() / 3]).unwrap();
    let tiny = tmp.path().join("tiny.png");
    image::RgbImage::new(1, 1).save(&tiny).unwrap();
    // A PNG whose header claims 20000x20000 (the decoder's limits refuse it
    // before allocating).
    let huge = tmp.path().join("huge.png");
    let mut bytes = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes[16..20].copy_from_slice(&20000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&20000u32.to_be_bytes());
    std::fs::write(&huge, &bytes).unwrap();
    let grey = tmp.path().join("grey.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([90]))
        .save(&grey)
        .unwrap();
    let draw = tmp.path().join("drawn");
    let out = facegate()
        .arg("detect")
        .arg("--draw")
        .arg(&draw)
        .arg(photos.join("skimage/astronaut.png"))
        .arg(photos.join("skimage/coffee.png"))
        .arg(&broken)
        .arg(&tiny)
        .arg(&grey)
        .arg(&huge)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[5]["error"].is_string(), "{}", lines[5]);
    let faces = lines[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0]["box"].as_array().unwrap().len(), 4);
    assert_eq!(faces[0]["landmarks"].as_array().unwrap().len(), 5);
    assert!(faces[0]["score"].as_f64().unwrap() > 0.9);
    assert_eq!(lines[1]["faces"].as_array().unwrap().len(), 0);
    assert!(lines[2]["error"].is_string(), "{}", lines[2]);
    assert!(lines[3]["error"].as_str().unwrap().contains("1x1"));
    assert_eq!(lines[4]["faces"].as_array().unwrap().len(), 0);
    assert!(draw.join("astronaut.png").exists());
}

#[test]
fn embed_runs_the_full_pipeline_and_says_no_face() {
    let photos = common::models_dir().join("photos");
    let tmp = tempfile::tempdir().unwrap();
    let crop = tmp.path().join("crop.png");
    common::run_ok(
        facegate()
            .args(["align", "--bundle", "facenet-int8-qdq-pt", "--out"])
            .arg(&crop)
            .arg(photos.join("skimage/astronaut.png")),
    );
    let img = image::open(&crop).unwrap();
    assert_eq!((img.width(), img.height()), (160, 160));
    let out = facegate()
        .args(["embed", "--bundle", "facenet-int8-qdq-pt"])
        .arg(photos.join("skimage/astronaut.png"))
        .arg(photos.join("skimage/chelsea.png"))
        .arg(&crop)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 512);
    assert_eq!(lines[1]["error"], "no face");
    // The aligned crop itself is a tight face: found again thanks to padding,
    // and it embeds close to the photo it came from.
    let a: Vec<f64> = lines[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let c: Vec<f64> = lines[2]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let cos: f64 = a.iter().zip(&c).map(|(x, y)| x * y).sum();
    assert!(cos > 0.8, "cosine {cos}");
}

#[test]
fn mask_writes_a_masked_photo() {
    let photos = common::models_dir().join("photos");
    let tmp = tempfile::tempdir().unwrap();
    let out_png = tmp.path().join("m.png");
    common::run_ok(
        facegate()
            .args(["mask", "--style", "kn95", "--seed", "3", "--out"])
            .arg(&out_png)
            .arg(photos.join("skimage/astronaut.png")),
    );
    let a = image::open(&out_png).unwrap().to_rgb8();
    let b = image::open(photos.join("skimage/astronaut.png"))
        .unwrap()
        .to_rgb8();
    let changed = a.pixels().zip(b.pixels()).filter(|(x, y)| x != y).count();
    assert!(changed > 2000, "{changed} pixels changed");
    let out = facegate()
        .args(["mask", "--style", "gasmask", "--out"])
        .arg(&out_png)
        .arg(photos.join("skimage/astronaut.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("surgical"));
}
