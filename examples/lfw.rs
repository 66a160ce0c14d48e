//! LFW measurements (nothing from LFW is written outside the cache folder).
//!
//! `cargo run --release --example lfw -- templates LFW_DIR [scale:dy ...]`
//!   10-fold pair accuracy of detect + align + embed for candidate alignment
//!   templates: ArcFace's 112 template, re-centred on 160 and scaled by
//!   `scale`, moved down by `dy` crop pixels. The threshold is chosen on 9
//!   folds and tested on the 10th.
//! `cargo run --release --example lfw -- presence LFW_DIR MASKS_DIR [N]`
//!   mask-presence accuracy on N LFW images, unmasked vs procedural vs
//!   MaskTheFace template masks.
//!
//! Env: FACEGATE_LFW_BUNDLE (default facenet-int8-qdq-pt), FACEGATE_LFW_THREADS
//! (default 2), FACEGATE_LFW_FOLDS (default 10: use the first N folds),
//! FACEGATE_LFW_CACHE (default ~/.cache/facegate/lfw).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // an experiment, not a daemon path

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use facegate::bundle::{default_models_dir, AlignSection, Bundle};
use facegate::eval::extract::FRONTAL_TEMPLATES;
use facegate::eval::lfw::{images_of, Pair};
use facegate::face::align::align;
use facegate::face::detect::{Detector, DetectorOptions, Face, TractDetector};
use facegate::face::embed::{Embedder, EmbedderOptions, TractEmbedder};
use facegate::face::mask::{self, template::TemplateSet, Procedural};
use facegate::face::presence;

const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

fn template(scale: f32, dy: f32) -> [[f32; 2]; 5] {
    ARCFACE_112.map(|p| {
        [
            (p[0] - 56.0) * scale + 80.0,
            (p[1] - 56.0) * scale + 80.0 + dy,
        ]
    })
}

/// pairs.txt, parsed by the evaluation's own reader.
fn read_pairs(lfw: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(lfw.join("pairs.txt"))?;
    facegate::eval::lfw::parse_pairs(&text).map_err(anyhow::Error::msg)
}

fn cache_dir() -> PathBuf {
    std::env::var_os("FACEGATE_LFW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/facegate/lfw")
        })
}

/// The face nearest the image centre (LFW centres the named person).
fn central(faces: &[Face], w: u32, h: u32) -> Option<Face> {
    let d = |f: &Face| {
        let (cx, cy) = ((f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0);
        (cx - w as f32 / 2.0).powi(2) + (cy - h as f32 / 2.0).powi(2)
    };
    faces.iter().min_by(|a, b| d(a).total_cmp(&d(b))).cloned()
}

/// Landmarks per image (cached): None when no face was found.
fn landmarks(lfw: &Path, images: &[String]) -> Result<HashMap<String, Option<[[f32; 2]; 5]>>> {
    let path = cache_dir().join("landmarks.json");
    let mut cache: HashMap<String, Option<[[f32; 2]; 5]>> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let todo: Vec<&String> = images.iter().filter(|i| !cache.contains_key(*i)).collect();
    if !todo.is_empty() {
        let det = TractDetector::from_bundle(
            &Bundle::open_named(&default_models_dir(), "retinaface-mnet025")?,
            &DetectorOptions::default(),
        )?;
        let t0 = std::time::Instant::now();
        for (k, i) in todo.iter().enumerate() {
            let img = facegate::face::imageio::load_rgb(&lfw.join("deepfunneled").join(i))?;
            let f = central(&det.detect(&img)?, img.width(), img.height());
            cache.insert((*i).clone(), f.map(|f| f.landmarks));
            if k % 1000 == 999 {
                eprintln!(
                    "  detected {} / {} ({:.0} s)",
                    k + 1,
                    todo.len(),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        std::fs::create_dir_all(cache_dir())?;
        std::fs::write(&path, serde_json::to_string(&cache)?)?;
    }
    Ok(cache)
}

/// Fallback when no face is found: LFW's deepfunneled crops put the face
/// in the middle, so use the mean landmarks of the detected faces.
fn mean_landmarks(lm: &HashMap<String, Option<[[f32; 2]; 5]>>) -> [[f32; 2]; 5] {
    let mut m = [[0f32; 2]; 5];
    let mut n = 0f32;
    for l in lm.values().flatten() {
        for k in 0..5 {
            m[k][0] += l[k][0];
            m[k][1] += l[k][1];
        }
        n += 1.0;
    }
    m.map(|p| [p[0] / n.max(1.0), p[1] / n.max(1.0)])
}

fn embeddings(
    lfw: &Path,
    images: &[String],
    lm: &HashMap<String, Option<[[f32; 2]; 5]>>,
    cfg: &AlignSection,
    key: &str,
    embedder: &TractEmbedder,
) -> Result<HashMap<String, Vec<f32>>> {
    let path = cache_dir().join(format!("emb-{}-{key}.bin", embedder.name()));
    let dim = embedder.dim();
    if let Ok(mut f) = std::fs::File::open(&path) {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if floats.len() == images.len() * dim {
            return Ok(images
                .iter()
                .cloned()
                .zip(floats.chunks_exact(dim).map(|c| c.to_vec()))
                .collect());
        }
    }
    let fallback = mean_landmarks(lm);
    let t0 = std::time::Instant::now();
    let mut out = Vec::with_capacity(images.len() * dim);
    for (k, chunk) in images.chunks(8).enumerate() {
        let crops: Vec<image::RgbImage> = chunk
            .iter()
            .map(|i| -> Result<image::RgbImage> {
                let img = facegate::face::imageio::load_rgb(&lfw.join("deepfunneled").join(i))?;
                let l = lm.get(i).copied().flatten().unwrap_or(fallback);
                Ok(align(&img, &l, cfg)?)
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&image::RgbImage> = crops.iter().collect();
        for e in embedder.embed_batch(&refs)? {
            out.extend_from_slice(e.as_slice());
        }
        if k % 100 == 99 {
            eprintln!(
                "  [{key}] embedded {} / {} ({:.0} s)",
                (k + 1) * 8,
                images.len(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let mut f = std::fs::File::create(&path)?;
    for v in &out {
        f.write_all(&v.to_le_bytes())?;
    }
    Ok(images
        .iter()
        .cloned()
        .zip(out.chunks_exact(dim).map(|c| c.to_vec()))
        .collect())
}

/// Accuracy at threshold t on pairs (score, same).
fn accuracy(s: &[(f32, bool)], t: f32) -> f64 {
    s.iter().filter(|(c, same)| (*c >= t) == *same).count() as f64 / s.len().max(1) as f64
}

fn best_threshold(s: &[(f32, bool)]) -> f32 {
    let mut cands: Vec<f32> = s.iter().map(|p| p.0).collect();
    cands.sort_by(f32::total_cmp);
    let mut best = (0.0, 0.0);
    for w in cands.windows(2) {
        let t = (w[0] + w[1]) / 2.0;
        let a = accuracy(s, t);
        if a > best.0 {
            best = (a, t);
        }
    }
    best.1
}

/// 10-fold: threshold on the other folds, accuracy on this one. (mean, std, mean threshold)
fn ten_fold(pairs: &[Pair], scores: &[f32], folds: usize) -> (f64, f64, f32) {
    let mut accs = Vec::new();
    let mut ts = Vec::new();
    for k in 0..folds {
        let train: Vec<(f32, bool)> = pairs
            .iter()
            .zip(scores)
            .filter(|(p, _)| p.fold != k)
            .map(|(p, s)| (*s, p.same))
            .collect();
        let test: Vec<(f32, bool)> = pairs
            .iter()
            .zip(scores)
            .filter(|(p, _)| p.fold == k)
            .map(|(p, s)| (*s, p.same))
            .collect();
        let t = best_threshold(&train);
        accs.push(accuracy(&test, t));
        ts.push(t);
    }
    let m = accs.iter().sum::<f64>() / accs.len() as f64;
    let sd = (accs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / accs.len() as f64).sqrt();
    (m, sd, ts.iter().sum::<f32>() / ts.len() as f32)
}

fn templates_cmd(lfw: &Path, cands: &[String]) -> Result<()> {
    let folds: usize = std::env::var("FACEGATE_LFW_FOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let pairs: Vec<Pair> = read_pairs(lfw)?
        .into_iter()
        .filter(|p| p.fold < folds)
        .collect();
    let images = images_of(&pairs);
    eprintln!(
        "{} pairs in {folds} folds, {} images",
        pairs.len(),
        images.len()
    );
    let lm = landmarks(lfw, &images)?;
    let missed = images
        .iter()
        .filter(|i| lm.get(*i).copied().flatten().is_none())
        .count();
    let bname =
        std::env::var("FACEGATE_LFW_BUNDLE").unwrap_or_else(|_| "facenet-int8-qdq-pt".into());
    let threads = std::env::var("FACEGATE_LFW_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let bundle = Bundle::open_named(&default_models_dir(), &bname)?;
    let embedder = TractEmbedder::from_bundle(
        &bundle,
        &EmbedderOptions {
            max_batch: 8,
            threads,
            ..Default::default()
        },
    )?;
    let base = bundle.manifest.align.clone().context("no [align]")?;
    println!("bundle {bname}; {} pairs in {folds} folds; {} images, {missed} without a detected face (mean landmarks used)", pairs.len(), images.len());
    println!("| template | eye y | mouth y | 10-fold accuracy | std | mean threshold |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for c in cands {
        let (s, dy) = c.split_once(':').unwrap_or((c, "0"));
        let (s, dy): (f32, f32) = (s.parse()?, dy.parse()?);
        let cfg = AlignSection {
            template: template(s, dy),
            ..base.clone()
        };
        let e = embeddings(lfw, &images, &lm, &cfg, &format!("s{s}-dy{dy}"), &embedder)?;
        let scores: Vec<f32> = pairs
            .iter()
            .map(|p| facegate::face::embed::cosine(&e[&p.a], &e[&p.b]))
            .collect();
        let (m, sd, t) = ten_fold(&pairs, &scores, folds);
        println!(
            "| scale {s}, dy {dy} | {:.1} | {:.1} | {:.2}% | {:.2} | {t:.3} |",
            cfg.template[0][1],
            cfg.template[3][1],
            100.0 * m,
            100.0 * sd
        );
    }
    Ok(())
}

fn presence_cmd(lfw: &Path, masks: &Path, n: usize) -> Result<()> {
    let pairs = read_pairs(lfw)?;
    let images = images_of(&pairs);
    // A spread-out deterministic subset.
    let step = (images.len() / n.max(1)).max(1);
    let subset: Vec<String> = images.iter().step_by(step).take(n).cloned().collect();
    let lm = landmarks(lfw, &subset)?;
    let set = TemplateSet::load(masks)?;
    let names: Vec<&str> = FRONTAL_TEMPLATES
        .into_iter()
        .filter(|n| set.templates.contains_key(*n))
        .collect();
    let cfg = Bundle::open_named(&default_models_dir(), "facenet-int8-qdq-pt")?
        .manifest
        .align
        .context("no [align]")?;
    let det = TractDetector::from_bundle(
        &Bundle::open_named(&default_models_dir(), "retinaface-mnet025")?,
        &DetectorOptions::default(),
    )?;
    // (kind, share, masked-truth, detected-after-masking)
    let mut rows: Vec<(String, f32, bool)> = Vec::new();
    let mut lost = HashMap::<String, usize>::new();
    let mut used = 0;
    for (k, i) in subset.iter().enumerate() {
        let Some(l) = lm.get(i).copied().flatten() else {
            continue;
        };
        used += 1;
        let img = facegate::face::imageio::load_rgb(&lfw.join("deepfunneled").join(i))?;
        let face = Face {
            bbox: [0.0; 4],
            score: 1.0,
            landmarks: l,
        };
        let share =
            |im: &image::RgbImage, kind: &str, lost: &mut HashMap<String, usize>| -> Result<f32> {
                // Re-detect, as the product would, so masks that hide the face count.
                let faces = det.detect(im)?;
                let l2 = match central(&faces, im.width(), im.height()) {
                    Some(f) => f.landmarks,
                    None => {
                        *lost.entry(kind.to_string()).or_default() += 1;
                        l
                    }
                };
                Ok(presence::skin_share(&align(im, &l2, &cfg)?, &cfg))
            };
        rows.push((
            "unmasked".into(),
            share(&img, "unmasked", &mut lost)?,
            false,
        ));
        let style = Procedural::ALL[k % Procedural::ALL.len()];
        let mut m = img.clone();
        mask::paint_procedural(&mut m, &face, style, k as u64)?;
        rows.push((
            "procedural".into(),
            share(&m, "procedural", &mut lost)?,
            true,
        ));
        let name = names[k % names.len()];
        let mut m = img.clone();
        set.paint(&mut m, &face, name)?;
        rows.push(("template".into(), share(&m, "template", &mut lost)?, true));
    }
    println!("mask presence on {used} LFW images (skin share < threshold = masked); faces lost by the detector: {lost:?}");
    println!("| threshold | unmasked correct | procedural masks correct | template masks correct | balanced accuracy (template) |");
    println!("| --- | --- | --- | --- | --- |");
    for t in [0.25f32, 0.3, presence::DEFAULT_THRESHOLD, 0.4, 0.45, 0.5] {
        let acc = |kind: &str| {
            let v: Vec<&(String, f32, bool)> = rows.iter().filter(|r| r.0 == kind).collect();
            v.iter().filter(|r| (r.1 < t) == r.2).count() as f64 / v.len().max(1) as f64
        };
        let (u, p, tm) = (acc("unmasked"), acc("procedural"), acc("template"));
        println!(
            "| {t:.2} | {:.1}% | {:.1}% | {:.1}% | {:.1}% |",
            100.0 * u,
            100.0 * p,
            100.0 * tm,
            50.0 * (u + tm)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("templates") if args.len() >= 2 => {
            let cands: Vec<String> = if args.len() > 2 {
                args[2..].to_vec()
            } else {
                vec!["1.1:0".into()]
            };
            templates_cmd(Path::new(&args[1]), &cands)
        }
        Some("presence") if args.len() >= 3 => {
            let n = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(600);
            presence_cmd(Path::new(&args[1]), Path::new(&args[2]), n)
        }
        _ => bail!(
            "usage: lfw templates LFW_DIR [scale:dy ...] | lfw presence LFW_DIR MASKS_DIR [N]"
        ),
    }
}
