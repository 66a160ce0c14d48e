//! Alignment against the pipeline's reference crops (align.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use facegate::bundle::Bundle;
use facegate::face::align::align;
use facegate::face::detect::{Detector, DetectorOptions, TractDetector};
use facegate::face::imageio::load_rgb;

/// Fraction of channel values within `tol` grey levels, and the largest difference.
fn agreement(a: &image::RgbImage, b: &image::RgbImage, tol: i16) -> (f64, i16) {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut ok = 0usize;
    let mut worst = 0i16;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = (*x as i16 - *y as i16).abs();
        worst = worst.max(d);
        ok += (d <= tol) as usize;
    }
    (ok as f64 / a.as_raw().len() as f64, worst)
}

/// One embedder per crop geometry: FaceNet (160, its tuned template) and
/// MobileFaceNet (112, insightface's template); each manifest's `[align]`.
const GEOMETRIES: [&str; 2] = ["facenet-int8-qdq-pt", "mobilefacenet-fp32"];

fn align_cfg(bundle: &str) -> facegate::bundle::AlignSection {
    let b = Bundle::open_named(&common::models_dir(), bundle).unwrap();
    b.manifest.align.clone().unwrap()
}

/// The pipeline's crop of `f` at the size of `cfg`.
fn reference_crop(f: &common::RefFace, cfg: &facegate::bundle::AlignSection) -> image::RgbImage {
    let file = f
        .crop_of_size(cfg.size)
        .or(f.crop.as_deref().filter(|_| cfg.size == 160))
        .unwrap_or_else(|| panic!("no {}x{} reference crop", cfg.size, cfg.size));
    let img = load_rgb(&common::crop_path(file)).unwrap();
    assert_eq!(img.dimensions(), (cfg.size, cfg.size), "{file}");
    img
}

#[test]
fn geometries_differ() {
    // The two bundles really test two geometries (not one template twice).
    let (a, b) = (align_cfg(GEOMETRIES[0]), align_cfg(GEOMETRIES[1]));
    assert_eq!((a.size, b.size), (160, 112));
    assert!((a.template[0][0] - b.template[0][0]).abs() > 1.0);
}

#[test]
fn reference_landmarks_give_the_reference_crop() {
    for bundle in GEOMETRIES {
        reference_landmarks_give_the_reference_crop_for(bundle);
    }
}

fn reference_landmarks_give_the_reference_crop_for(bundle: &str) {
    let cfg = align_cfg(bundle);
    let reference = common::reference();
    let mut n = 0;
    for p in &reference.photos {
        let img = load_rgb(&common::models_dir().join("photos").join(&p.photo)).unwrap();
        for f in &p.faces {
            let want = reference_crop(f, &cfg);
            let got = align(&img, &f.landmarks, &cfg).unwrap();
            // The JSON's landmarks are rounded to 1/1000 px, and JPEGs decode
            // slightly differently in PIL (libjpeg-turbo) and the image crate.
            let (frac, worst) = agreement(&got, &want, 1);
            eprintln!(
                "{} at {}: {:.3}% within +-1, worst {worst}",
                p.photo,
                cfg.size,
                100.0 * frac
            );
            assert!(
                frac >= 0.995,
                "{}: {frac:.5} within 1, worst {worst}",
                p.photo
            );
            assert!(worst <= 2, "{}: worst {worst}", p.photo);
            if p.photo.ends_with(".png") {
                assert!(frac >= 0.9999, "{}: {frac:.5}", p.photo);
            }
            n += 1;
        }
    }
    assert!(n >= 9);
}

#[test]
fn detect_then_align_matches_the_pipeline_crop() {
    for bundle in GEOMETRIES {
        detect_then_align_matches_the_pipeline_crop_for(bundle);
    }
}

fn detect_then_align_matches_the_pipeline_crop_for(bundle: &str) {
    let cfg = align_cfg(bundle);
    let reference = common::reference();
    let b = Bundle::open_named(&common::models_dir(), "retinaface-mnet025").unwrap();
    let det = TractDetector::from_bundle(
        &b,
        &DetectorOptions {
            max_side: None,
            ..Default::default()
        },
    )
    .unwrap();
    let mut worst_frac = 1f64;
    for p in reference.photos.iter().filter(|p| !p.faces.is_empty()) {
        let img = load_rgb(&common::models_dir().join("photos").join(&p.photo)).unwrap();
        let faces = det.detect(&img).unwrap();
        for (k, f) in p.faces.iter().enumerate() {
            let want = reference_crop(f, &cfg);
            let got = align(&img, &faces[k].landmarks, &cfg).unwrap();
            let (frac, worst) = agreement(&got, &want, 2);
            eprintln!(
                "{} at {}: {:.3}% within +-2, worst {worst}",
                p.photo,
                cfg.size,
                100.0 * frac
            );
            // PNGs decode identically on both sides: the whole chain (tract
            // detector + Rust warp) must reproduce the pipeline's crop. JPEGs
            // decode slightly differently (PIL's libjpeg-turbo vs the image
            // crate), which moves RetinaFace's landmarks by 0.03-0.05 px
            // (0.0006 px on PNGs, see tests/detect.rs) and sharp edges in the
            // crop by a few grey levels.
            let floor = if p.photo.ends_with(".png") {
                0.99
            } else {
                0.97
            };
            assert!(
                frac >= floor,
                "{}: {frac:.5} within +-2, worst {worst}",
                p.photo
            );
            worst_frac = worst_frac.min(frac);
        }
    }
    eprintln!(
        "worst photo: {:.3}% of values within +-2 grey levels",
        100.0 * worst_frac
    );
}
