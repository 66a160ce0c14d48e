//! Training crops (issue 14 §2): the exporter makes the device's crops,
//! deterministically for a seed, and caches them by key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use facegate::bundle::Bundle;
use facegate::eval::crops::{export, CropJob};
use facegate::face::align::align;
use facegate::face::detect::{largest, Detector, DetectorOptions, TractDetector};

fn job(seed: u64) -> CropJob {
    CropJob {
        root: common::models_dir().join("photos"),
        images: vec![
            "face_recognition/obama.jpg".into(),
            "face_recognition/biden.jpg".into(),
            "skimage/coffee.png".into(),
        ],
        masks: 2,
        seed,
    }
}

#[test]
fn crops_are_the_device_crops_deterministic_and_cached() {
    let models = common::models_dir();
    let d = tempfile::tempdir().unwrap();
    let run = |seed, dir: &std::path::Path| {
        export(
            &job(seed),
            &models,
            "retinaface-mnet025",
            "facenet-fp32",
            dir,
            2,
        )
        .unwrap()
    };
    let a = run(7, d.path());
    assert!(!a.cached);
    // 2 faces x (1 unmasked + 2 masked); coffee has no face: 3 failures.
    assert_eq!((a.rows, a.failures), (6, 3), "{a:?}");
    let bytes_a = std::fs::read(&a.data).unwrap();
    let again = run(7, d.path());
    assert!(again.cached && again.key == a.key);
    // The same seed elsewhere gives the same bytes; another seed other masks.
    let d2 = tempfile::tempdir().unwrap();
    let b = run(7, d2.path());
    assert_eq!(std::fs::read(&b.data).unwrap(), bytes_a);
    let c = run(8, d2.path());
    assert_ne!(c.key, a.key);
    let bytes_c = std::fs::read(&c.data).unwrap();
    let n = 160 * 160 * 3;
    assert_eq!(bytes_c.len(), bytes_a.len());
    assert_eq!(
        bytes_c[..n],
        bytes_a[..n],
        "unmasked crops do not depend on the seed"
    );
    assert_ne!(bytes_c[n..2 * n], bytes_a[n..2 * n], "masked crops do");
    // Row 0 is exactly what the device computes: detect, largest, align.
    let db = Bundle::open_named(&models, "retinaface-mnet025").unwrap();
    let det = TractDetector::from_bundle(&db, &DetectorOptions::default()).unwrap();
    let eb = Bundle::open_named(&models, "facenet-fp32").unwrap();
    let img = facegate::face::imageio::load_rgb(&models.join("photos/face_recognition/biden.jpg"))
        .unwrap();
    let f = largest(&det.detect(&img).unwrap()).cloned().unwrap();
    let crop = align(&img, &f.landmarks, eb.manifest.align.as_ref().unwrap()).unwrap();
    // Rows are in list order: obama (3 rows), then biden.
    assert_eq!(&bytes_a[3 * n..4 * n], crop.as_raw().as_slice());
    let index = std::fs::read_to_string(&a.index).unwrap();
    assert!(index
        .lines()
        .any(|l| l.starts_with("-\tskimage/coffee.png\t0\tno-face")));
}
