//! tract embeddings against onnxruntime's reference embeddings, on real
//! aligned face crops made by the models pipeline.
//!
//! Environment (used by the aarch64 run under qemu, which is ~100x slower):
//! FACEGATE_PARITY_BUNDLES=a,b limits the bundles, FACEGATE_PARITY_CROPS=N
//! limits the crops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use facegate::bundle::Bundle;
use facegate::face::embed::{cosine, Embedder, EmbedderOptions, TractEmbedder};

fn bundles_under_test(reference: &common::Reference) -> Vec<String> {
    let all: Vec<String> = reference.crops[0].embeddings.keys().cloned().collect();
    match common::env_list("FACEGATE_PARITY_BUNDLES") {
        Some(mut wanted) => {
            wanted.dedup();
            for w in &wanted {
                assert!(
                    all.contains(w),
                    "FACEGATE_PARITY_BUNDLES names {w}, not in the reference ({all:?})"
                );
            }
            wanted
        }
        None => all,
    }
}

fn crops_under_test(reference: &common::Reference) -> Vec<(String, image::RgbImage)> {
    let n = std::env::var("FACEGATE_PARITY_CROPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    reference
        .crops
        .iter()
        .take(n)
        .map(|c| {
            (
                c.file.clone(),
                facegate::face::imageio::load_rgb(&common::crop_path(&c.file)).unwrap(),
            )
        })
        .collect()
}

#[test]
fn tract_matches_onnxruntime_on_real_crops() {
    let reference = common::reference();
    let models = common::models_dir();
    let crops = crops_under_test(&reference);
    assert!(crops.len() >= 2, "need at least two reference crops");
    let refs: Vec<&image::RgbImage> = crops.iter().map(|c| &c.1).collect();
    let by_file: std::collections::HashMap<&str, &common::RefCrop> = reference
        .crops
        .iter()
        .map(|c| (c.file.as_str(), c))
        .collect();
    for name in bundles_under_test(&reference) {
        let bundle = Bundle::open_named(&models, &name).unwrap();
        // A batch plan smaller than the crop count exercises both the batched
        // plan and the batch-1 tail.
        let opts = EmbedderOptions {
            max_batch: 4,
            threads: 1,
            ..Default::default()
        };
        let e = TractEmbedder::from_bundle(&bundle, &opts).unwrap();
        let got = e.embed_batch(&refs).unwrap();
        assert_eq!(got.len(), crops.len());
        // fp32 must be the same function as onnxruntime; int8 graphs round
        // differently in each engine, so they get a looser bound.
        let floor = if bundle.manifest.model.precision == "fp32" {
            0.9999
        } else {
            0.999
        };
        let mut worst = 1.0f32;
        for ((file, _), emb) in crops.iter().zip(&got) {
            let want = &by_file[file.as_str()].embeddings[&name];
            assert_eq!(emb.dim(), want.len());
            let norm: f32 = emb.as_slice().iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{name} {file}: norm {norm}");
            let c = cosine(emb.as_slice(), want);
            worst = worst.min(c);
            assert!(
                c >= floor,
                "{name} {file}: cosine to onnxruntime {c} < {floor}"
            );
        }
        eprintln!(
            "{name}: worst cosine to onnxruntime over {} crops: {worst:.7}",
            crops.len()
        );
    }
}

#[test]
fn int8_bundles_stay_close_to_fp32() {
    let reference = common::reference();
    let models = common::models_dir();
    let crops = crops_under_test(&reference);
    let refs: Vec<&image::RgbImage> = crops.iter().map(|c| &c.1).collect();
    let fp32: Vec<&Vec<f32>> = crops
        .iter()
        .map(|(f, _)| {
            &reference
                .crops
                .iter()
                .find(|c| &c.file == f)
                .unwrap()
                .embeddings["facenet-fp32"]
        })
        .collect();
    for name in bundles_under_test(&reference) {
        let bundle = Bundle::open_named(&models, &name).unwrap();
        if bundle.manifest.model.precision != "int8" {
            continue;
        }
        let e = TractEmbedder::from_bundle(
            &bundle,
            &EmbedderOptions {
                max_batch: 8,
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let got = e.embed_batch(&refs).unwrap();
        let cos: Vec<f32> = got
            .iter()
            .zip(&fp32)
            .map(|(g, f)| cosine(g.as_slice(), f))
            .collect();
        let min = cos.iter().copied().fold(1.0, f32::min);
        let mean = cos.iter().sum::<f32>() / cos.len() as f32;
        eprintln!("{name} (tract) vs fp32: mean cosine {mean:.5}, min {min:.5}");
        assert!(min >= 0.99, "{name}: cosine to fp32 fell to {min}");
    }
}

#[test]
fn batch_and_single_runs_agree() {
    let reference = common::reference();
    let models = common::models_dir();
    let crops = crops_under_test(&reference);
    let name = bundles_under_test(&reference).into_iter().next().unwrap();
    let bundle = Bundle::open_named(&models, &name).unwrap();
    let e = TractEmbedder::from_bundle(
        &bundle,
        &EmbedderOptions {
            max_batch: 2,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let pair: Vec<&image::RgbImage> = crops.iter().take(2).map(|c| &c.1).collect();
    let batched = e.embed_batch(&pair).unwrap();
    for (crop, b) in pair.iter().zip(&batched) {
        let single = e.embed(crop).unwrap();
        let c = single.cosine(b);
        assert!(c > 0.99999, "{name}: batch vs single cosine {c}");
    }
}

#[test]
fn same_person_scores_above_different_people() {
    // Obama appears in several face_recognition photos, Biden in one: a broken
    // preprocessing (colour order, normalisation, layout) destroys this order.
    let reference = common::reference();
    let models = common::models_dir();
    let need = [
        "face_recognition_obama_0.png",
        "face_recognition_obama3_0.png",
        "face_recognition_biden_0.png",
    ];
    let crops: Vec<image::RgbImage> = need
        .iter()
        .map(|f| facegate::face::imageio::load_rgb(&common::crop_path(f)).unwrap())
        .collect();
    let name = bundles_under_test(&reference).into_iter().next().unwrap();
    let e = TractEmbedder::from_bundle(
        &Bundle::open_named(&models, &name).unwrap(),
        &EmbedderOptions {
            max_batch: 1,
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let es: Vec<_> = crops.iter().map(|c| e.embed(c).unwrap()).collect();
    let same = es[0].cosine(&es[1]);
    let diff = es[0].cosine(&es[2]).max(es[1].cosine(&es[2]));
    eprintln!("{name}: obama/obama {same:.3}, obama/biden {diff:.3}");
    assert!(same > diff + 0.2, "same person {same} vs different {diff}");
}
