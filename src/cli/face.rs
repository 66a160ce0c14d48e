//! The face tools: `facegate embed`, `compare`, `detect`, `align`, `mask`, and the
//! bundle loading they share with the benchmarks.

use crate::bench;
use crate::bundle::AlignSection;
use crate::bundle::{self, Bundle};
use crate::face::detect::{largest, Detector, DetectorOptions, Face, TractDetector};
use crate::face::embed::{Embedder, EmbedderOptions, Precision, TractEmbedder};
use crate::face::imageio;
use crate::face::mask::{self, MaskStyle};
use crate::face::pipeline::largest_face_crop;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Clone)]
pub(crate) struct DetectOpts {
    /// Detector bundle to use.
    #[arg(long, default_value = bundle::DEFAULT_DETECTOR)]
    detector: String,
    /// Downscale frames whose longer side exceeds this before detecting (0: never).
    #[arg(long, default_value_t = 1280)]
    max_side: u32,
    /// Replicated border, as a fraction of the longer side, added for a
    /// second try when no face is found (0: no retry).
    #[arg(long, default_value_t = 0.4)]
    pad: f32,
    /// Threads for the detector's matrix products.
    #[arg(long = "detect-threads", default_value_t = 1)]
    detect_threads: usize,
}

#[derive(Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    det: DetectOpts,
    /// Also write each image with its faces drawn to DIR/<name>.png.
    #[arg(long, value_name = "DIR")]
    draw: Option<PathBuf>,
    /// Image files (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

#[derive(Args)]
pub(crate) struct AlignArgs {
    #[command(flatten)]
    det: DetectOpts,
    /// Embedder bundle whose [align] template is used (default: the
    /// folder's default embedder, the trained one when installed).
    #[arg(long)]
    bundle: Option<String>,
    /// Where to write the aligned crop (PNG).
    #[arg(long, value_name = "OUT.png")]
    out: PathBuf,
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

#[derive(Args)]
pub(crate) struct MaskArgs {
    #[command(flatten)]
    det: DetectOpts,
    /// surgical, surgical-white, surgical-green, black-cloth, patterned,
    /// kn95, n95, or template:<dir>:<name> (MaskTheFace templates, dir holds masks.cfg).
    #[arg(long, default_value = "surgical")]
    style: String,
    /// Seed for the small random variations (colour, fit, pattern).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the masked photo (PNG).
    #[arg(long, value_name = "OUT.png")]
    out: PathBuf,
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

#[derive(Args)]
pub(crate) struct EmbedArgs {
    /// The images are already aligned face crops of the model's size
    /// (160x160 for FaceNet). Without it every image goes through the full
    /// pipeline: detect, keep the largest face, align, embed.
    #[arg(long)]
    aligned: bool,
    #[command(flatten)]
    det: DetectOpts,
    /// Embedder bundle to use (default: the folder's default embedder).
    #[arg(long)]
    bundle: Option<String>,
    /// Threads for tract's matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Crops per inference run.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Compute precision for float models: f32, or f16 (fast on aarch64 cores with FP16).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Image files (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// The images are aligned face crops (required until detection lands).
    #[arg(long, required = true)]
    aligned: bool,
    /// Embedder bundle to use (default: the folder's default embedder).
    #[arg(long)]
    bundle: Option<String>,
    /// Aligned face crops (at least two).
    #[arg(required = true, num_args = 2.., value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

#[derive(Serialize)]
pub(crate) struct EmbedLine<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(crate) fn load_embedder(
    models: &Path,
    name: &str,
    threads: usize,
    batch: usize,
    precision: Precision,
) -> Result<TractEmbedder> {
    let b = Bundle::open_named(models, name)?;
    let opts = EmbedderOptions {
        max_batch: batch.max(1),
        threads: threads.max(1),
        precision,
        rewrites: true,
    };
    Ok(TractEmbedder::from_bundle(&b, &opts)?)
}

pub(crate) fn load_detector(models: &Path, o: &DetectOpts) -> Result<TractDetector> {
    let b = Bundle::open_named(models, &o.detector)?;
    let opts = DetectorOptions {
        threads: o.detect_threads.max(1),
        max_side: (o.max_side > 0).then_some(o.max_side),
        pad: o.pad.max(0.0),
        pad_max_side: None,
        score_threshold: None,
    };
    Ok(TractDetector::from_bundle(&b, &opts)?)
}

pub(crate) fn align_section(models: &Path, bundle_name: &str) -> Result<AlignSection> {
    let b = Bundle::open_named(models, bundle_name)?;
    b.manifest
        .align
        .clone()
        .with_context(|| format!("bundle {bundle_name} has no [align] section"))
}

pub(crate) fn embed(models: &Path, a: EmbedArgs) -> Result<ExitCode> {
    let embedder = load_embedder(
        models,
        &embedder_name(models, &a.bundle),
        a.threads,
        a.batch,
        a.precision,
    )?;
    let size = embedder.crop_size();
    let front = if a.aligned {
        None
    } else {
        Some((
            load_detector(models, &a.det)?,
            align_section(models, &embedder_name(models, &a.bundle))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    let print = |out: &mut std::io::StdoutLock, line: &EmbedLine| -> Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    for chunk in a.images.chunks(a.batch.max(1)) {
        // Decode the chunk; failures are reported in order, successes batched.
        let mut loaded: Vec<(usize, image::RgbImage)> = Vec::new();
        let mut errors: Vec<Option<String>> = vec![None; chunk.len()];
        for (i, p) in chunk.iter().enumerate() {
            let loaded_img = imageio::load_rgb(p).map_err(|e| e.to_string());
            let loaded_img = match (&front, loaded_img) {
                (Some((det, cfg)), Ok(img)) => match largest_face_crop(det, &img, cfg) {
                    Ok(Some((_, crop))) => Ok(crop),
                    Ok(None) => Err("no face".to_string()),
                    Err(e) => Err(e.to_string()),
                },
                (_, r) => r,
            };
            match loaded_img {
                Ok(img) if img.width() == size && img.height() == size => loaded.push((i, img)),
                Ok(img) => {
                    errors[i] = Some(format!(
                        "image is {}x{}; --aligned needs {size}x{size} face crops",
                        img.width(),
                        img.height()
                    ))
                }
                Err(e) => errors[i] = Some(e),
            }
        }
        let refs: Vec<&image::RgbImage> = loaded.iter().map(|(_, img)| img).collect();
        let mut embeddings: Vec<Option<Vec<f32>>> = vec![None; chunk.len()];
        match embedder.embed_batch(&refs) {
            Ok(es) => {
                for ((i, _), e) in loaded.iter().zip(es) {
                    embeddings[*i] = Some(e.into_vec());
                }
            }
            Err(e) => {
                for (i, _) in &loaded {
                    errors[*i] = Some(e.to_string());
                }
            }
        }
        for (i, p) in chunk.iter().enumerate() {
            let path = p.to_string_lossy();
            let line = EmbedLine {
                path: &path,
                embedding: embeddings[i].as_deref(),
                error: errors[i].take(),
            };
            if line.error.is_some() {
                failed += 1;
            }
            print(&mut out, &line)?;
        }
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn compare(models: &Path, a: CompareArgs) -> Result<ExitCode> {
    let embedder = load_embedder(
        models,
        &embedder_name(models, &a.bundle),
        1,
        8,
        Precision::F32,
    )?;
    let mut crops = Vec::new();
    for p in &a.images {
        let img = imageio::load_rgb(p)?;
        crops.push(img);
    }
    let refs: Vec<&image::RgbImage> = crops.iter().collect();
    let t = std::time::Instant::now();
    let es = embedder.embed_batch(&refs)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let label = |p: &PathBuf| {
        p.file_stem().map_or_else(
            || p.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    };
    let mut header = vec![String::new()];
    header.extend((0..es.len()).map(|j| format!("#{j}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = es
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut r = vec![format!("#{i} {}", label(&a.images[i]))];
            r.extend(es.iter().map(|f| format!("{:.3}", e.cosine(f))));
            r
        })
        .collect();
    println!(
        "cosine similarity ({}, {} faces embedded in {ms:.0} ms; same person scores high)",
        embedder.name(),
        es.len()
    );
    print!("{}", bench::table(&header, &rows));
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
pub(crate) struct DetectLine<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    faces: Option<&'a [Face]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(crate) fn detect(models: &Path, a: DetectArgs) -> Result<ExitCode> {
    let det = load_detector(models, &a.det)?;
    if let Some(dir) = &a.draw {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for p in &a.images {
        let path = p.to_string_lossy();
        let result = imageio::load_rgb(p)
            .map_err(|e| e.to_string())
            .and_then(|img| {
                det.detect(&img)
                    .map(|f| (img, f))
                    .map_err(|e| e.to_string())
            });
        let line = match &result {
            Ok((_, faces)) => DetectLine {
                path: &path,
                faces: Some(faces),
                error: None,
            },
            Err(e) => DetectLine {
                path: &path,
                faces: None,
                error: Some(e.clone()),
            },
        };
        failed += line.error.is_some() as usize;
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        if let (Some(dir), Ok((img, faces))) = (&a.draw, result) {
            let mut img = img;
            crate::face::draw::faces(&mut img, &faces);
            let stem = p
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy());
            let dst = dir.join(format!("{stem}.png"));
            img.save(&dst)
                .with_context(|| format!("writing {}", dst.display()))?;
        }
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn align_cmd(models: &Path, a: AlignArgs) -> Result<ExitCode> {
    let det = load_detector(models, &a.det)?;
    let cfg = align_section(models, &embedder_name(models, &a.bundle))?;
    let img = imageio::load_rgb(&a.image)?;
    let Some((face, crop)) = largest_face_crop(&det, &img, &cfg)? else {
        bail!("{}: no face", a.image.display());
    };
    crop.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "face at {:?} (score {:.3}) aligned to {}",
        face.bbox.map(|v| v.round()),
        face.score,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn mask_cmd(models: &Path, a: MaskArgs) -> Result<ExitCode> {
    let det = load_detector(models, &a.det)?;
    let style: MaskStyle = a.style.parse()?;
    let mut img = imageio::load_rgb(&a.image)?;
    let faces = det.detect(&img)?;
    let Some(face) = largest(&faces) else {
        bail!("{}: no face", a.image.display());
    };
    mask::paint(&mut img, face, &style, a.seed)?;
    img.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `--bundle`, else the models folder's default embedder (the trained one
/// when installed; `bundle::default_embedder`).
pub(crate) fn embedder_name(models: &Path, named: &Option<String>) -> String {
    named
        .clone()
        .unwrap_or_else(|| bundle::default_embedder(models).to_string())
}
