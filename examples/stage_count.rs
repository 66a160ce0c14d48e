//! Runs one stage of the decision path K times after loading everything, so
//! that an instruction count taken outside the process (qemu's plugin,
//! `tools/qemu-insn`; or valgrind) can be split per stage:
//! `(count(K) - count(0)) / K` is the cost of one call, model loading and
//! process start cancelled out. Driven by `scripts/count-insns`
//! (docs/PERFORMANCE.md, "What a board would do").
//!
//! ```text
//! stage_count MODELS STAGE K [--photo P] [--frame 640x480] [--gallery N] [--plain (no graph rewrites)]
//!   [--embedder NAME] [--max-side N (the daemon's detect_max_side; default 1280)]
//!   STAGE: detect | track (one tracked region) | align | presence | embed | scan | none
//! ```
//!
//! Single-threaded on purpose (tract and the scan on the caller's thread):
//! the count is the work of one core.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use facegate::bundle::{self, Bundle};
use facegate::face::detect::{largest, Detector, DetectorOptions, TractDetector};
use facegate::face::embed::{Embedder, EmbedderOptions, TractEmbedder};
use facegate::gallery::scan::Matrix;
use facegate::gallery::simd::Kernel;
use image::RgbImage;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The photo scaled to fit the frame's height and centred on a grey frame,
/// as a camera would see a person at arm's length.
fn frame_from(photo: &RgbImage, w: u32, h: u32) -> RgbImage {
    let scale = h as f32 / photo.height() as f32;
    let pw = ((photo.width() as f32 * scale) as u32).clamp(1, w);
    let small = image::imageops::resize(photo, pw, h, image::imageops::FilterType::Triangle);
    let mut frame = RgbImage::from_pixel(w, h, image::Rgb([96, 96, 96]));
    image::imageops::overlay(&mut frame, &small, i64::from((w - pw) / 2), 0);
    frame
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [models, stage, k, ..] = args.as_slice() else {
        bail!("usage: stage_count MODELS STAGE K [--photo P] [--frame WxH] [--gallery N] [--embedder NAME] [--plain]");
    };
    let models = PathBuf::from(models);
    let k: usize = k.parse().context("K")?;
    let photo = flag(&args, "--photo")
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join("photos/face_recognition/obama.jpg"));
    let (w, h) = match flag(&args, "--frame") {
        Some(s) => {
            let (w, h) = s.split_once('x').context("--frame WxH")?;
            (w.parse()?, h.parse()?)
        }
        None => (640u32, 480u32),
    };
    let gallery: usize = flag(&args, "--gallery").map_or(Ok(1000), |s| s.parse())?;
    let max_side: u32 = flag(&args, "--max-side").map_or(Ok(1280), |s| s.parse())?;
    let embedder_name =
        flag(&args, "--embedder").unwrap_or_else(|| bundle::DEFAULT_EMBEDDER.into());

    let frame = frame_from(&facegate::face::imageio::load_rgb(&photo)?, w, h);
    let det_bundle = Bundle::open_named(&models, bundle::DEFAULT_DETECTOR)?;
    let emb_bundle = Bundle::open_named(&models, &embedder_name)?;
    // The daemon's settings for one core: by default no downscaling of a
    // 640x480 frame (detect_max_side 1280); no padded retry when a face is
    // found.
    let det = TractDetector::from_bundle(
        &det_bundle,
        &DetectorOptions {
            threads: 1,
            max_side: (max_side > 0).then_some(max_side),
            ..DetectorOptions::default()
        },
    )?;
    let emb = TractEmbedder::from_bundle(
        &emb_bundle,
        &EmbedderOptions {
            max_batch: 1,
            threads: 1,
            // --plain: without facegate's graph rewrites (tract's own ops).
            rewrites: !args.iter().any(|a| a == "--plain"),
            ..EmbedderOptions::default()
        },
    )?;
    let align_cfg = emb_bundle
        .manifest
        .align
        .clone()
        .context("embedder manifest has no [align] section")?;
    // Everything a stage needs is computed before the counted loop.
    let faces = det.detect(&frame)?;
    let face = largest(&faces).context("no face in the frame")?.clone();
    let crop = facegate::face::align::align(&frame, &face.landmarks, &align_cfg)?;
    let query = emb.embed(&crop)?;
    let dim = query.dim();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let matrix = Matrix::generate(dim, gallery, |r, row| {
        for v in row.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *v = (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        (r as u64, r as u32)
    });
    // "track": the detector on one tracked face's region (issue 17 §1), the
    // track seeded by one whole-frame search here.
    let tracker = facegate::face::track::Tracker::new(facegate::face::track::TrackOptions {
        every: u32::MAX,
        max_age: std::time::Duration::from_secs(86_400),
        ..Default::default()
    });
    tracker.detect(&det, &frame, std::time::Instant::now())?;
    // And one tracked step: the region's plan is built on the first.
    tracker.detect(&det, &frame, std::time::Instant::now())?;
    let kernel = Kernel::best();
    let mut scores = vec![0f32; matrix.rows()];

    let mut sink = 0f32;
    for _ in 0..k {
        match stage.as_str() {
            "detect" => sink += det.detect(&frame)?.len() as f32,
            "track" => {
                let (faces, step) = tracker.detect(&det, &frame, std::time::Instant::now())?;
                if !matches!(step, facegate::face::track::Step::Tracked(_)) {
                    bail!("the tracked stage searched the whole frame ({step:?})");
                }
                sink += faces.len() as f32;
            }
            "align" => {
                sink += facegate::face::align::align(&frame, &face.landmarks, &align_cfg)?.as_raw()
                    [0] as f32
            }
            "presence" => {
                sink += facegate::face::presence::presence(&crop, &align_cfg, 0.5).skin_share;
            }
            "embed" => sink += emb.embed(&crop)?.as_slice()[0],
            "scan" => {
                matrix.scores_into(kernel, query.as_slice(), &mut scores);
                sink += scores[0];
            }
            "none" => {}
            other => bail!("unknown stage {other}"),
        }
    }
    println!(
        "stage {stage} x{k}: detect_max_side {max_side}, embedder {embedder_name} ({dim}-d), frame {w}x{h}, {} face(s), gallery {gallery} ({}), checksum {sink:.3}",
        faces.len(),
        kernel.kind()
    );
    Ok(())
}
