//! Accuracy regression guard for the masked-trained default embedder
//! (issue 14 §4): when `models/build --lfw PATH --train` has installed
//! `mobilefacenet-masked`, one fold of the folds it was *not* trained on
//! (its manifest's `training_eval_folds`), through the product's pipeline:
//! masked probes (procedural masks) against unmasked enrolment, both as
//! periocular crops as the daemon compares them, must stay above floors and
//! beat the pretrained network at FAR 1e-3 on the same images; whole faces
//! must score exactly as the pretrained bundle (model.onnx is that model).
//!
//! Skipped (and passes, saying why) without LFW (FACEGATE_LFW, default
//! ../shared/data/lfw) or without the trained bundle in FACEGATE_MODELS /
//! models/out — so CI, which has no trained bundle, runs the pretrained
//! floors of tests/eval_lfw.rs only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::time::Instant;

use facegate::bundle::{Bundle, DEFAULT_EMBEDDER, TRAINED_EMBEDDER};
use facegate::eval::extract::{Front, Model, Renderer};
use facegate::eval::lfw::{images_of, Lfw, Pair};
use facegate::eval::report::{all_pairs, pair_scores};
use facegate::eval::stats::{accuracy, best_threshold, eer, tar_at_far};

/// Floors for the trained bundle's periocular M-U on its first held-out fold
/// (procedural masks, accuracy at the fold's best threshold), a few points
/// below the figures measured when this test was written (docs/TRAINING.md;
/// AMD EPYC Zen 3, fold 6, 743 images): trained accuracy 96.17 %, EER
/// 4.33 %, TAR @ FAR 1e-3 over every pair 76.12 %; the pretrained network on
/// the same crops 96.00 %, 4.00 %, 68.79 %.
const FLOOR_MU_ACC: f64 = 0.93;
const CEIL_MU_EER: f64 = 0.07;
const FLOOR_MU_TAR: f64 = 0.70;

/// Periocular M-U on `pairs`: (10-fold-style accuracy at the fold's best
/// threshold, pair EER, TAR at FAR 1e-3 over every pair among the fold's
/// images — the tail the daemon works in).
fn mu(pairs: &[Pair], front: &Front, model: &Model) -> (f64, f64, f64) {
    let images = images_of(pairs);
    let u = front.extract(model, &Renderer::Unmasked, &images).unwrap();
    let m = front
        .extract(model, &Renderer::Procedural, &images)
        .unwrap();
    let s: Vec<(f32, bool)> = pair_scores(pairs, &u, &m)
        .into_iter()
        .map(|x| (x.0, x.1))
        .collect();
    let gen: Vec<f32> = s.iter().filter(|x| x.1).map(|x| x.0).collect();
    let imp: Vec<f32> = s.iter().filter(|x| !x.1).map(|x| x.0).collect();
    let (lg, mut li) = all_pairs(&images, &u, &m);
    li.sort_unstable_by(|a, b| b.total_cmp(a));
    let (tar, _, _) = tar_at_far(&lg, &li, 1e-3);
    (accuracy(&s, best_threshold(&s)), eer(&gen, &imp), tar)
}

#[test]
fn trained_default_on_a_fold_it_never_saw() {
    let Some((lfw_dir, models)) =
        common::lfw_and_models("trained_default_on_a_fold_it_never_saw", TRAINED_EMBEDDER)
    else {
        return;
    };
    let t0 = Instant::now();
    let trained = Bundle::open_named(&models, TRAINED_EMBEDDER).unwrap();
    let prov = &trained.manifest.provenance;
    let folds = prov
        .get("training_eval_folds")
        .and_then(|v| v.as_str())
        .expect("the trained bundle records the folds it was not trained on")
        .to_string();
    let split = prov
        .get("training_split")
        .and_then(|v| v.as_str())
        .unwrap()
        .to_string();
    assert_eq!(split, format!("f{folds}"), "split and held-out folds agree");
    let first: usize = folds.split('-').next().unwrap().parse().unwrap();
    let fold = first - 1; // pairs.txt folds are numbered from 1 in the split names
    let cut = trained
        .manifest
        .thresholds
        .as_ref()
        .and_then(|t| t.periocular_cut)
        .expect("the shipped bundle is calibrated for periocular comparison");

    let lfw = Lfw::open(&lfw_dir).unwrap();
    let pairs: Vec<Pair> = lfw
        .pairs
        .iter()
        .filter(|p| p.fold == fold)
        .cloned()
        .collect();
    assert_eq!(pairs.len(), 600);
    let tmp = tempfile::tempdir().unwrap();
    let front = common::lfw_front(&lfw, &models, tmp.path());

    // [trained, pretrained]: whole-face pair scores and periocular M-U.
    let images = images_of(&pairs);
    let mut whole = Vec::new();
    let mut peri = Vec::new();
    for name in [TRAINED_EMBEDDER, DEFAULT_EMBEDDER] {
        let model = Model::load(&models, name).unwrap();
        let u = front.extract(&model, &Renderer::Unmasked, &images).unwrap();
        whole.push(pair_scores(&pairs, &u, &u));
        peri.push(mu(&pairs, &front, &model.with_periocular(cut)));
    }
    // Whole faces: the trained bundle's model.onnx is the pretrained one.
    assert_eq!(
        whole[0], whole[1],
        "whole-face scores differ from the pretrained bundle's"
    );
    let [(acc_t, eer_t, tar_t), (acc_p, eer_p, tar_p)] = [peri[0], peri[1]];
    eprintln!(
        "fold {} (held out of {split}), periocular M-U procedural: trained accuracy {:.2} % EER {:.2} % TAR@1e-3 {:.2} %, pretrained {:.2} % / {:.2} % / {:.2} % ({:.0} s)",
        fold + 1,
        100.0 * acc_t,
        100.0 * eer_t,
        100.0 * tar_t,
        100.0 * acc_p,
        100.0 * eer_p,
        100.0 * tar_p,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        acc_t >= FLOOR_MU_ACC,
        "accuracy {acc_t:.4} < {FLOOR_MU_ACC}"
    );
    assert!(eer_t <= CEIL_MU_EER, "EER {eer_t:.4} > {CEIL_MU_EER}");
    assert!(
        tar_t >= FLOOR_MU_TAR,
        "TAR@1e-3 {tar_t:.4} < {FLOOR_MU_TAR}"
    );
    // What training is for: the far tail, where the daemon decides. (The
    // pair EER of one fold moves in steps of 1/300 and is not compared.)
    assert!(
        tar_t >= tar_p + 0.02,
        "trained TAR@1e-3 {tar_t:.4} not above pretrained {tar_p:.4}"
    );
}
