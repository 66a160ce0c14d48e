//! Training crops exactly as the device makes them (issue 14 §2): detect the
//! largest face (RetinaFace through tract), align it to the embedder's
//! template, and for each of `masks` seeded variants paint a **procedural**
//! mask on the original, detect again on the masked image and align that
//! detection — the same chain as [`super::extract`] and the daemon. The
//! MaskTheFace template renderer is never used here: it is the unseen-mask
//! test of `facegate eval lfw`.
//!
//! Output (written by [`export`] into `dir`, named by [`CropJob::key`], so a
//! second run with the same inputs is a no-op):
//! * `crops-<key>.u8`: `rows × size × size × 3` bytes, RGB, row-major;
//! * `crops-<key>.tsv`: `row  image  variant  style  seed` (variant 0 is the
//!   unmasked crop, 1.. the masked ones; failures have row `-` and style
//!   `no-face` / `no-face-after-mask`);
//! * `crops-<key>.json`: size, counts, seconds, the key's inputs.
//!
//! Mask seeds are derived from the image name, the variant and the job seed
//! ([`mask_seed`]), never equal to the evaluation's seed of that image, so a
//! run is deterministic for a seed.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{fnv1a, io_err, EvalError, PIPELINE_VERSION};
use crate::bundle::{AlignSection, Bundle};
use crate::face::align::align;
use crate::face::detect::{largest, Detector, DetectorOptions, Face, TractDetector};
use crate::face::mask::{paint_procedural, Procedural};

/// Bump when the crop files' layout or the variant rules change.
pub const CROPS_VERSION: u32 = 1;

/// One export: which images, how many masked variants, which seed.
#[derive(Debug, Clone)]
pub struct CropJob {
    /// LFW `deepfunneled/` folder (image names are relative to it).
    pub root: PathBuf,
    pub images: Vec<String>,
    /// Masked variants per image (each with its own seed and style).
    pub masks: usize,
    pub seed: u64,
}

/// The seed of masked variant `k` (1-based) of `image` for job seed `seed`.
pub fn mask_seed(image: &str, k: usize, seed: u64) -> u64 {
    fnv1a(&format!("train:{seed}:{k}:{image}"))
}

/// The procedural style of a masked variant: consecutive variants of one
/// image take consecutive styles from a seeded start, so every style is
/// drawn evenly over a data set.
pub fn mask_style(image: &str, k: usize, seed: u64) -> Procedural {
    let n = Procedural::ALL.len();
    let start = (fnv1a(&format!("style:{seed}:{image}")) % n as u64) as usize;
    Procedural::ALL[(start + k.saturating_sub(1)) % n]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl CropJob {
    /// Cache key over everything that changes a crop: versions, detector and
    /// its options, the alignment section, the image list (names and byte
    /// sizes), the variant count and the seed.
    pub fn key(&self, detector_sha: &str, align: &AlignSection) -> Result<String, EvalError> {
        let mut h = Sha256::new();
        h.update(format!(
            "crops v{CROPS_VERSION} pipeline v{PIPELINE_VERSION}\n{detector_sha}\n{:?}\n{} {}\n",
            (align.size, align.template, &align.border),
            self.masks,
            self.seed
        ));
        for i in &self.images {
            let p = self.root.join(i);
            let len = std::fs::metadata(&p).map_err(io_err(&p))?.len();
            h.update(format!("{i} {len}\n"));
        }
        Ok(hex(&h.finalize())[..16].to_string())
    }
}

/// One image's crops: (variant, style name, seed, crop or failure label).
type Variant = (usize, &'static str, u64, Result<RgbImage, &'static str>);

/// Crops of one image: variant 0 unmasked, then `job.masks` masked ones.
pub fn image_crops(
    det: &TractDetector,
    align_cfg: &AlignSection,
    job: &CropJob,
    image: &str,
) -> Result<Vec<Variant>, EvalError> {
    let p = job.root.join(image);
    let img = crate::face::imageio::load_rgb(&p).map_err(|e| EvalError::Data {
        path: p.clone(),
        message: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(1 + job.masks);
    let Some(f0): Option<Face> = largest(&det.detect(&img)?).cloned() else {
        out.push((0, "none", 0, Err("no-face")));
        for k in 1..=job.masks {
            let s = mask_style(image, k, job.seed);
            out.push((k, s.name(), mask_seed(image, k, job.seed), Err("no-face")));
        }
        return Ok(out);
    };
    out.push((0, "none", 0, Ok(align(&img, &f0.landmarks, align_cfg)?)));
    for k in 1..=job.masks {
        let style = mask_style(image, k, job.seed);
        let seed = mask_seed(image, k, job.seed);
        let mut m = img.clone();
        paint_procedural(&mut m, &f0, style, seed)?;
        let crop = match largest(&det.detect(&m)?) {
            Some(f) => Ok(align(&m, &f.landmarks, align_cfg)?),
            None => Err("no-face-after-mask"),
        };
        out.push((k, style.name(), seed, crop));
    }
    Ok(out)
}

/// Summary of an export.
#[derive(Debug, Clone)]
pub struct Exported {
    pub key: String,
    pub data: PathBuf,
    pub index: PathBuf,
    pub rows: usize,
    pub failures: usize,
    pub seconds: f64,
    pub cached: bool,
}

/// Export the crops of `job` into `dir` with the detector `detector` and the
/// alignment of embedder bundle `embedder` from `models`. A no-op when the
/// files of the same key are complete.
pub fn export(
    job: &CropJob,
    models: &Path,
    detector: &str,
    embedder: &str,
    dir: &Path,
    threads: usize,
) -> Result<Exported, EvalError> {
    let db = Bundle::open_named(models, detector)?;
    let eb = Bundle::open_named(models, embedder)?;
    let align_cfg = eb
        .manifest
        .align
        .clone()
        .ok_or_else(|| EvalError::Other(format!("{embedder}: no [align] section")))?;
    let key = job.key(db.sha256(), &align_cfg)?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let data = dir.join(format!("crops-{key}.u8"));
    let index = dir.join(format!("crops-{key}.tsv"));
    let meta = dir.join(format!("crops-{key}.json"));
    if meta.exists() && data.exists() && index.exists() {
        let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
        let rows = text.lines().filter(|l| !l.starts_with('-')).count();
        let failures = text.lines().count() - rows;
        return Ok(Exported {
            key,
            data,
            index,
            rows,
            failures,
            seconds: 0.0,
            cached: true,
        });
    }
    let det = TractDetector::from_bundle(&db, &DetectorOptions::default())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .stack_size(crate::crash::INFERENCE_STACK)
        .build()
        .map_err(|e| EvalError::Other(format!("thread pool: {e}")))?;
    let tmp_data = dir.join(format!("crops-{key}.u8.part"));
    let tmp_index = dir.join(format!("crops-{key}.tsv.part"));
    let mut wd = BufWriter::new(std::fs::File::create(&tmp_data).map_err(io_err(&tmp_data))?);
    let mut wi = BufWriter::new(std::fs::File::create(&tmp_index).map_err(io_err(&tmp_index))?);
    let t0 = Instant::now();
    let (mut rows, mut failures, mut done) = (0usize, 0usize, 0usize);
    let side = align_cfg.size as usize;
    for block in job.images.chunks(64) {
        let res: Vec<Vec<Variant>> = pool.install(|| {
            block
                .par_iter()
                .map(|i| image_crops(&det, &align_cfg, job, i))
                .collect::<Result<_, _>>()
        })?;
        for (image, vars) in block.iter().zip(res) {
            for (k, style, seed, crop) in vars {
                match crop {
                    Ok(c) => {
                        debug_assert_eq!(c.as_raw().len(), side * side * 3);
                        wd.write_all(c.as_raw()).map_err(io_err(&tmp_data))?;
                        writeln!(wi, "{rows}\t{image}\t{k}\t{style}\t{seed}")
                            .map_err(io_err(&tmp_index))?;
                        rows += 1;
                    }
                    Err(why) => {
                        writeln!(wi, "-\t{image}\t{k}\t{why}\t{seed}")
                            .map_err(io_err(&tmp_index))?;
                        failures += 1;
                    }
                }
            }
        }
        done += block.len();
        if done % 1024 < 64 || done == job.images.len() {
            let s = t0.elapsed().as_secs_f64();
            eprintln!(
                "crops: {done} / {} images, {rows} crops ({s:.0} s, ~{:.0} s left)",
                job.images.len(),
                (job.images.len() - done) as f64 * s / done as f64
            );
        }
    }
    wd.flush().map_err(io_err(&tmp_data))?;
    wi.flush().map_err(io_err(&tmp_index))?;
    drop((wd, wi));
    std::fs::rename(&tmp_data, &data).map_err(io_err(&data))?;
    std::fs::rename(&tmp_index, &index).map_err(io_err(&index))?;
    let seconds = t0.elapsed().as_secs_f64();
    let json = format!(
        "{{\"key\": \"{key}\", \"size\": {side}, \"rows\": {rows}, \"failures\": {failures}, \
         \"images\": {}, \"masks\": {}, \"seed\": {}, \"seconds\": {seconds:.1}, \
         \"detector\": \"{detector}\", \"detector_sha256\": \"{}\", \"embedder\": \"{embedder}\", \
         \"renderer\": \"procedural\", \"crops_version\": {CROPS_VERSION}, \
         \"pipeline_version\": {PIPELINE_VERSION}}}\n",
        job.images.len(),
        job.masks,
        job.seed,
        db.sha256()
    );
    std::fs::write(&meta, json).map_err(io_err(&meta))?;
    Ok(Exported {
        key,
        data,
        index,
        rows,
        failures,
        seconds,
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_variant_and_job_seed_and_from_eval() {
        let i = "A/A_0001.jpg";
        assert_eq!(mask_seed(i, 1, 7), mask_seed(i, 1, 7));
        assert_ne!(mask_seed(i, 1, 7), mask_seed(i, 2, 7));
        assert_ne!(mask_seed(i, 1, 7), mask_seed(i, 1, 8));
        // The evaluation paints pair images with fnv1a(image).
        assert_ne!(mask_seed(i, 1, 7), fnv1a(i));
    }

    #[test]
    fn consecutive_variants_cover_every_style() {
        let n = Procedural::ALL.len();
        let styles: std::collections::HashSet<&str> = (1..=n)
            .map(|k| mask_style("B/B_0003.jpg", k, 1).name())
            .collect();
        assert_eq!(styles.len(), n);
    }
}
