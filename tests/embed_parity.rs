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
    let all = reference.bundles();
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

/// The reference crops of `bundle`'s size (at most FACEGATE_PARITY_CROPS),
/// with that bundle's onnxruntime embedding of each.
fn crops_under_test(
    reference: &common::Reference,
    bundle: &str,
) -> Vec<(String, image::RgbImage, Vec<f32>)> {
    let n = std::env::var("FACEGATE_PARITY_CROPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    reference
        .crops_for(bundle)
        .into_iter()
        .take(n)
        .map(|c| {
            (
                c.file.clone(),
                facegate::face::imageio::load_rgb(&common::crop_path(&c.file)).unwrap(),
                c.embeddings[bundle].clone(),
            )
        })
        .collect()
}

#[test]
fn every_embedder_bundle_has_reference_embeddings() {
    // A bundle the pipeline built but left out of the reference would escape
    // the parity test below.
    let reference = common::reference();
    let models = common::models_dir();
    let with_reference = reference.bundles();
    for name in facegate::bundle::list(&models).unwrap() {
        let b = Bundle::open_named(&models, &name).unwrap();
        if b.manifest.kind != facegate::bundle::Kind::Embedder {
            continue;
        }
        assert!(
            with_reference.contains(&name),
            "{name} has no reference embeddings"
        );
        let size = b.manifest.align.as_ref().unwrap().size;
        for c in reference.crops_for(&name) {
            assert_eq!(c.size, size, "{name}: crop {} has the wrong size", c.file);
        }
    }
}

#[test]
fn tract_matches_onnxruntime_on_real_crops() {
    let reference = common::reference();
    let models = common::models_dir();
    for name in bundles_under_test(&reference) {
        let crops = crops_under_test(&reference, &name);
        assert!(
            crops.len() >= 2,
            "{name}: need at least two reference crops"
        );
        let refs: Vec<&image::RgbImage> = crops.iter().map(|c| &c.1).collect();
        let bundle = Bundle::open_named(&models, &name).unwrap();
        // A batch plan smaller than the crop count exercises both the batched
        // plan and the batch-1 tail.
        let opts = EmbedderOptions {
            max_batch: 4,
            threads: 1,
            ..Default::default()
        };
        let e = TractEmbedder::from_bundle(&bundle, &opts).unwrap();
        assert_eq!(
            e.crop_size(),
            bundle.manifest.align.as_ref().unwrap().size,
            "{name}: crop size not taken from the manifest"
        );
        assert_eq!(e.dim(), bundle.manifest.output.as_ref().unwrap().dim);
        let got = e.embed_batch(&refs).unwrap();
        assert_eq!(got.len(), crops.len());
        // fp32 must be the same function as onnxruntime; int8 graphs round
        // differently in each engine, so they get a looser bound, looser
        // still for MobileFaceNet (measured 0.9987 worst for its QDQ variant:
        // a small network, where one rounding step weighs more).
        let floor = if bundle.manifest.model.precision == "fp32" {
            0.9999
        } else if name.starts_with("mobilefacenet") {
            0.995
        } else {
            0.999
        };
        let mut worst = 1.0f32;
        for ((file, _, want), emb) in crops.iter().zip(&got) {
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
            "{name}: worst cosine to onnxruntime over {} {}x{} crops: {worst:.7}",
            crops.len(),
            e.crop_size(),
            e.crop_size()
        );
    }
}

#[test]
fn int8_bundles_stay_close_to_fp32() {
    let reference = common::reference();
    let models = common::models_dir();
    for name in bundles_under_test(&reference) {
        let bundle = Bundle::open_named(&models, &name).unwrap();
        if bundle.manifest.model.precision != "int8" {
            continue;
        }
        let fp32_name = common::fp32_counterpart(&name);
        let crops = crops_under_test(&reference, &name);
        let refs: Vec<&image::RgbImage> = crops.iter().map(|c| &c.1).collect();
        let fp32: Vec<&Vec<f32>> = crops
            .iter()
            .map(|(f, _, _)| {
                &reference
                    .crops
                    .iter()
                    .find(|c| &c.file == f)
                    .unwrap()
                    .embeddings[&fp32_name]
            })
            .collect();
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
        eprintln!("{name} (tract) vs {fp32_name}: mean cosine {mean:.5}, min {min:.5}");
        // MobileFaceNet's int8 variants measure 0.984-0.988 worst (mean
        // 0.992-0.994) in onnxruntime as well (models/build checks 0.98 there):
        // a floor of 0.98 for them, 0.99 for FaceNet.
        let floor = if name.starts_with("mobilefacenet") {
            0.98
        } else {
            0.99
        };
        assert!(min >= floor, "{name}: cosine to fp32 fell to {min}");
    }
}

/// facegate's graph rewrites (`face::prelu`) fire on MobileFaceNet's PReLU
/// patterns on every architecture and change no bit of any embedding, on
/// every bundle under test.
#[test]
fn graph_rewrites_change_no_bit() {
    let reference = common::reference();
    let models = common::models_dir();
    for name in bundles_under_test(&reference) {
        let bundle = Bundle::open_named(&models, &name).unwrap();
        let load = |rewrites: bool| {
            TractEmbedder::from_bundle(
                &bundle,
                &EmbedderOptions {
                    max_batch: 1,
                    rewrites,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let (with, without) = (load(true), load(false));
        eprintln!("{name}: {} PReLU patterns rewritten", with.rewritten());
        assert_eq!(without.rewritten(), 0);
        if name == "mobilefacenet-fp32" {
            // 33 PReLUs, every one in the graph's five-operator spelling,
            // on every architecture.
            assert_eq!(with.rewritten(), 33, "{name}");
        }
        for (file, crop, _) in crops_under_test(&reference, &name) {
            let a = with.embed(&crop).unwrap().into_vec();
            let b = without.embed(&crop).unwrap().into_vec();
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name} {file}: rewritten graph differs"
            );
        }
    }
}

#[test]
fn batch_and_single_runs_agree() {
    let reference = common::reference();
    let models = common::models_dir();
    let name = bundles_under_test(&reference).into_iter().next().unwrap();
    let crops = crops_under_test(&reference, &name);
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
        "face_recognition/obama.jpg",
        "face_recognition/obama3.jpg",
        "face_recognition/biden.jpg",
    ];
    for name in bundles_under_test(&reference) {
        let bundle = Bundle::open_named(&models, &name).unwrap();
        let size = bundle.manifest.align.as_ref().unwrap().size;
        let crops: Vec<image::RgbImage> = need
            .iter()
            .map(|photo| {
                let p = reference
                    .photos
                    .iter()
                    .find(|p| p.photo == *photo)
                    .unwrap_or_else(|| panic!("{photo} not in the reference"));
                let file = p.faces[0]
                    .crop_of_size(size)
                    .or(p.faces[0].crop.as_deref().filter(|_| size == 160))
                    .unwrap_or_else(|| panic!("{photo}: no {size}x{size} crop"));
                facegate::face::imageio::load_rgb(&common::crop_path(file)).unwrap()
            })
            .collect();
        let e = TractEmbedder::from_bundle(
            &bundle,
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
        assert!(
            same > diff + 0.2,
            "{name}: same person {same} vs different {diff}"
        );
    }
}
