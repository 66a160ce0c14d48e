//! Contact sheet of synthetic masks on the registry test photos:
//! `cargo run --release --example mask_sheet -- OUT.png [template-dir]`.
//! Cycles through the procedural styles (and, with a template folder, adds
//! MaskTheFace templates) over the faces in $FACEGATE_MODELS/photos.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // an experiment, not a daemon path

use std::path::PathBuf;

use anyhow::{Context, Result};
use facegate::bundle::{default_models_dir, Bundle};
use facegate::face::detect::{Detector, DetectorOptions, Face, TractDetector};
use facegate::face::mask::{paint_procedural, template::TemplateSet, Procedural};

const TILE: u32 = 256;

fn tile(img: &image::RgbImage, f: &Face) -> image::RgbImage {
    let (cx, cy) = (
        (f.bbox[0] + f.bbox[2]) / 2.0,
        (f.bbox[1] + f.bbox[3]) / 2.0 + 0.05 * f.height(),
    );
    let side = 1.45 * f.width().max(f.height());
    let x0 = (cx - side / 2.0).max(0.0) as u32;
    let y0 = (cy - side / 2.0).max(0.0) as u32;
    let s = (side as u32)
        .min(img.width() - x0)
        .min(img.height() - y0)
        .max(1);
    let crop = image::imageops::crop_imm(img, x0, y0, s, s).to_image();
    image::imageops::resize(&crop, TILE, TILE, image::imageops::FilterType::Lanczos3)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(
        args.get(1)
            .context("usage: mask_sheet OUT.png [template-dir]")?,
    );
    let templates = args
        .get(2)
        .map(|d| TemplateSet::load(d.as_ref()))
        .transpose()?;
    let models = default_models_dir();
    let det = TractDetector::from_bundle(
        &Bundle::open_named(&models, "retinaface-mnet025")?,
        &DetectorOptions::default(),
    )?;
    let mut faces = Vec::new();
    let mut photos: Vec<PathBuf> = ["face_recognition", "skimage"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(models.join("photos").join(d))
                .into_iter()
                .flatten()
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    photos.sort();
    for p in photos {
        let img = facegate::face::imageio::load_rgb(&p)?;
        for f in det.detect(&img)? {
            faces.push((img.clone(), f));
        }
    }
    let mut sheet = image::RgbImage::new(4 * TILE, 4 * TILE);
    for k in 0..16u32 {
        let (img, f) = &faces[k as usize % faces.len()];
        let mut img = img.clone();
        match (&templates, k >= 14) {
            (Some(t), true) => {
                let name = if k == 14 { "surgical_blue" } else { "KN95" };
                t.paint(&mut img, f, name)?;
            }
            _ => {
                let style = Procedural::ALL[(k as usize + k as usize / 9) % Procedural::ALL.len()];
                paint_procedural(&mut img, f, style, k as u64)?;
            }
        }
        image::imageops::replace(
            &mut sheet,
            &tile(&img, f),
            ((k % 4) * TILE) as i64,
            ((k / 4) * TILE) as i64,
        );
    }
    sheet.save(&out)?;
    println!("wrote {} ({} faces)", out.display(), faces.len());
    Ok(())
}
