//! The RGB anti-spoofing bundle (`antispoof-rgb`, docs/LIVENESS.md) through
//! tract against onnxruntime's scores from the build (`models/build`
//! reference: the crops it made and what onnxruntime said of them), our
//! crop of the same faces against the build's, and bundle errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use facegate::bundle::{Bundle, Kind, Manifest};
use facegate::face::antispoof::{self, TractAntispoof};
use serde::Deserialize;

#[derive(Deserialize)]
struct Entry {
    file: String,
    photo: String,
    face: usize,
    score: f32,
}

#[derive(Deserialize)]
struct Section {
    bundle: String,
    crop_scale: f32,
    crops: Vec<Entry>,
}

#[derive(Deserialize)]
struct Doc {
    antispoof: Section,
}

fn reference() -> Section {
    let p = common::models_dir().join("reference/reference.json");
    let d: Doc = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    d.antispoof
}

fn model(name: &str) -> TractAntispoof {
    let b = Bundle::open(common::models_dir().join("bundles").join(name)).unwrap();
    TractAntispoof::from_bundle(&b).unwrap()
}

#[test]
fn tract_scores_the_builds_crops_as_onnxruntime_did() {
    let r = reference();
    assert!(r.crops.len() >= 8, "{} reference crops", r.crops.len());
    let m = model(&r.bundle);
    let mut worst = 0f32;
    for e in &r.crops {
        let p = common::models_dir()
            .join("reference/antispoof")
            .join(&e.file);
        let c = image::open(&p).unwrap().to_rgb8();
        let s = m.score_crop(&c).unwrap();
        worst = worst.max((s - e.score).abs());
        eprintln!("{}: tract {s:.5} onnxruntime {:.5}", e.file, e.score);
    }
    assert!(worst <= 1e-4, "worst |tract - onnxruntime| {worst}");
}

#[test]
fn our_crop_of_each_photo_is_the_builds_crop() {
    let r = reference();
    let m = model(&r.bundle);
    let refs = common::reference();
    let mut worst = (0f64, 0f32);
    for e in &r.crops {
        let photo = refs.photos.iter().find(|p| p.photo == e.photo).unwrap();
        let bbox = photo.faces[e.face].bbox;
        let img = image::open(common::models_dir().join("photos").join(&e.photo))
            .unwrap()
            .to_rgb8();
        let ours = antispoof::crop(&img, bbox, r.crop_scale, m.size()).unwrap();
        let theirs = image::open(
            common::models_dir()
                .join("reference/antispoof")
                .join(&e.file),
        )
        .unwrap()
        .to_rgb8();
        let diff = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / ours.as_raw().len() as f64;
        let ds = (m.score(&img, bbox).unwrap() - e.score).abs();
        worst = (worst.0.max(diff), worst.1.max(ds));
    }
    eprintln!(
        "our crop vs the build's: mean |pixel diff| worst {:.2}, score diff worst {:.4}",
        worst.0, worst.1
    );
    // Different resampling code (image's triangle filter, PIL's bilinear):
    // close, not equal.
    assert!(worst.0 < 3.0 && worst.1 < 0.05, "{worst:?}");
}

#[test]
fn a_broken_antispoof_manifest_says_what_is_wrong() {
    let dir = common::models_dir().join("bundles/antispoof-rgb");
    let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
    assert_eq!(Manifest::parse(&text).unwrap().kind, Kind::Antispoof);
    for (from, to, says) in [
        (
            "crop_scale = 1.0",
            "crop_scale = 9.0",
            "antispoof.crop_scale 9",
        ),
        ("\n[antispoof]", "\n[antispoof_gone]", "unknown field"),
        (
            "[-1, 128, 128, 3]",
            "[-1, 128, 96, 3]",
            "not a square RGB crop",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let e = Manifest::parse(&text.replace(from, to)).unwrap_err();
        assert!(e.contains(says), "{to}: {e}");
    }
    let (a, p) = (
        text.find("\n[antispoof]").unwrap(),
        text.find("\n[provenance]").unwrap(),
    );
    let no_section = format!("{}{}", &text[..a], &text[p..]);
    let e = Manifest::parse(&no_section).unwrap_err();
    assert!(e.contains("needs an [antispoof] section"), "{e}");
    // An embedder is not an anti-spoofing model.
    let b = Bundle::open(common::models_dir().join("bundles/mobilefacenet-fp32")).unwrap();
    let e = TractAntispoof::from_bundle(&b).err().unwrap().to_string();
    assert!(e.contains("antispoof"), "{e}");
}
