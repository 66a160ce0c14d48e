//! Per-image front end and embedding, as the device runs it, cached.
//!
//! Unmasked: detect → largest face → align → presence → embed.
//! Masked: detect the original, paint a mask on its largest face (seeded by
//! the image name, so every run paints the same mask), then run the whole
//! pipeline again on the masked image (detect again, align, presence,
//! embed). A face the detector misses is recorded as a failure; the
//! statistics treat it as a non-match, never drop it.
//!
//! Two caches (see [`super::cache`]): detections keyed by detector sha256,
//! renderer and [`super::PIPELINE_VERSION`]; embeddings keyed additionally by
//! the embedder's model sha256 and alignment template. Records are keyed by
//! image name and the sha256 of the image bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::cache::{get_f32s, put_f32s, RecordLog};
use super::lfw::Lfw;
use super::{fnv1a, io_err, EvalError, PIPELINE_VERSION};
use crate::bundle::{AlignSection, Bundle};
use crate::face::align::align;
use crate::face::detect::{largest, Detector, DetectorOptions, Face, TractDetector};
use crate::face::embed::{cosine, Embedder, EmbedderOptions, TractEmbedder};
use crate::face::mask::template::TemplateSet;
use crate::face::mask::{paint_procedural, Procedural};
use crate::face::presence;

/// Score given to a pair when either side has no face: below every cosine,
/// so a failure is a non-match at every threshold.
pub const FAIL_SCORE: f32 = -2.0;

/// MaskTheFace templates of frontal masks (the `_left`/`_right` variants
/// are for turned heads; `gas`, `empty`, `inpaint` are not face masks).
pub const FRONTAL_TEMPLATES: [&str; 6] = [
    "surgical",
    "surgical_blue",
    "surgical_green",
    "cloth",
    "KN95",
    "N95",
];

/// How probes are masked.
pub enum Renderer {
    Unmasked,
    Procedural,
    Templates {
        dir: PathBuf,
        set: TemplateSet,
        names: Vec<String>,
        tag: String,
    },
}

impl Renderer {
    /// `procedural` or `templates:<dir>` (a MaskTheFace `masks` folder).
    pub fn parse(spec: &str) -> Result<Renderer, EvalError> {
        if spec == "procedural" {
            return Ok(Renderer::Procedural);
        }
        if spec == "none" || spec == "unmasked" {
            return Ok(Renderer::Unmasked);
        }
        let Some(dir) = spec.strip_prefix("templates:") else {
            return Err(EvalError::Other(format!(
                "mask renderer {spec:?}: expected procedural or templates:<dir>"
            )));
        };
        let dir = PathBuf::from(dir);
        let set = TemplateSet::load(&dir)?;
        let names: Vec<String> = FRONTAL_TEMPLATES
            .iter()
            .filter(|n| set.templates.contains_key(**n))
            .map(|n| n.to_string())
            .collect();
        if names.is_empty() {
            return Err(EvalError::Data {
                path: dir,
                message: "none of the frontal mask templates was found".into(),
            });
        }
        let cfg = dir.join("masks.cfg");
        let bytes = std::fs::read(&cfg).map_err(io_err(&cfg))?;
        let tag = hex(&Sha256::digest(&bytes))[..12].to_string();
        Ok(Renderer::Templates {
            dir,
            set,
            names,
            tag,
        })
    }

    /// Short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Renderer::Unmasked => "unmasked",
            Renderer::Procedural => "procedural",
            Renderer::Templates { .. } => "templates",
        }
    }

    /// Cache key part.
    pub fn key(&self) -> String {
        match self {
            Renderer::Unmasked => "none".into(),
            Renderer::Procedural => "procedural".into(),
            Renderer::Templates { tag, names, .. } => {
                format!("templates-{tag}-{}", names.len())
            }
        }
    }

    pub fn is_masked(&self) -> bool {
        !matches!(self, Renderer::Unmasked)
    }

    /// Paint this renderer's mask for `image` on `face`.
    pub fn paint(&self, img: &mut RgbImage, face: &Face, image: &str) -> Result<(), EvalError> {
        let h = fnv1a(image);
        match self {
            Renderer::Unmasked => {}
            Renderer::Procedural => {
                let style = Procedural::ALL[(h % Procedural::ALL.len() as u64) as usize];
                paint_procedural(img, face, style, h)?;
            }
            Renderer::Templates { set, names, .. } => {
                let name = &names[((h >> 16) % names.len() as u64) as usize];
                set.paint(img, face, name)?;
            }
        }
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// No face after masking (or in the unmasked image).
    NoFace,
    /// No face in the original, so no mask could be painted.
    NoFaceBeforeMask,
}

/// Embeddings of one condition (model × renderer) for a set of images.
#[derive(Debug, Clone)]
pub struct Table {
    pub dim: usize,
    pub index: HashMap<String, usize>,
    pub status: Vec<Status>,
    pub skin: Vec<f32>,
    /// `dim` floats per image (zeros for failures).
    pub emb: Vec<f32>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.status.len()
    }
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }
    /// The embedding of an image, None when its pipeline failed.
    pub fn get(&self, image: &str) -> Option<&[f32]> {
        let i = *self.index.get(image)?;
        (self.status[i] == Status::Ok).then(|| &self.emb[i * self.dim..(i + 1) * self.dim])
    }
    pub fn skin(&self, image: &str) -> Option<f32> {
        let i = *self.index.get(image)?;
        (self.status[i] == Status::Ok).then_some(self.skin[i])
    }
    pub fn failures(&self) -> usize {
        self.status.iter().filter(|s| **s != Status::Ok).count()
    }
}

/// Cosine of two images from two tables; [`FAIL_SCORE`] if either failed.
pub fn score(ta: &Table, a: &str, tb: &Table, b: &str) -> f32 {
    match (ta.get(a), tb.get(b)) {
        (Some(x), Some(y)) => cosine(x, y),
        _ => FAIL_SCORE,
    }
}

/// An embedder bundle loaded for evaluation.
pub struct Model {
    pub name: String,
    pub sha256: String,
    pub align: AlignSection,
    pub embedder: TractEmbedder,
    /// The bundle's `[periocular_model]`, which [`Model::with_periocular`]
    /// puts in `embedder`'s place (as the daemon does for periocular crops).
    pub periocular_embedder: Option<TractEmbedder>,
    /// Embed periocular crops (grey from this many IODs below the eyes,
    /// [`crate::face::periocular`]) instead of whole faces.
    pub periocular: Option<f32>,
    /// The bundle's mask presence classifier (`[presence]`), if any.
    pub presence: Option<presence::Classifier>,
    /// The bundle's calibrated periocular comparison, if any (what the
    /// daemon does with masked probes).
    pub periocular_mode: Option<crate::engine::PeriocularMode>,
}

impl Model {
    pub fn load(models: &Path, name: &str) -> Result<Model, EvalError> {
        let b = Bundle::open_named(models, name)?;
        let align = b
            .manifest
            .align
            .clone()
            .ok_or_else(|| EvalError::Other(format!("{name}: no [align] section")))?;
        let opts = EmbedderOptions {
            max_batch: 8,
            threads: 1,
            ..Default::default()
        };
        let embedder = TractEmbedder::from_bundle(&b, &opts)?;
        let periocular_embedder = TractEmbedder::periocular_from_bundle(&b, &opts)?;
        Ok(Model {
            name: name.to_string(),
            sha256: b.sha256().to_string(),
            align,
            embedder,
            periocular_embedder,
            periocular: None,
            presence: presence::Classifier::from_manifest(&b.manifest),
            periocular_mode: crate::engine::PeriocularMode::from_thresholds(
                b.manifest.thresholds.as_ref(),
            ),
        })
    }

    /// The same model on periocular crops cut `cut` IODs below the eyes;
    /// its name (and so its cache and report labels) says so. A bundle with
    /// a periocular model embeds them with it (and its sha256 keys the cache).
    pub fn with_periocular(mut self, cut: f32) -> Model {
        self.name = format!("{}+periocular{cut}", self.name);
        self.periocular = Some(cut);
        if let Some(p) = self.periocular_embedder.take() {
            self.sha256 = p.sha256().to_string();
            self.embedder = p;
        }
        self
    }

    fn align_tag(&self) -> String {
        let s = format!(
            "{:?}",
            (self.align.size, self.align.template, &self.align.border)
        );
        hex(&Sha256::digest(s.as_bytes()))[..8].to_string()
    }
}

/// The shared front end: the detector, the image keys, the cache folder.
pub struct Front<'a> {
    pub lfw: &'a Lfw,
    pub detector: TractDetector,
    pub detector_name: String,
    pub detector_sha: String,
    /// Cache-key suffix for non-default detector options ("" by default).
    detector_opts_tag: String,
    pub cache: PathBuf,
    pub pool: rayon::ThreadPool,
    keys: HashMap<String, String>,
}

fn face_payload(f: Option<&Face>) -> Vec<u8> {
    let mut p = vec![f.is_some() as u8];
    if let Some(f) = f {
        put_f32s(&mut p, &f.bbox);
        put_f32s(&mut p, &[f.score]);
        put_f32s(&mut p, f.landmarks.as_flattened());
    }
    p
}

fn parse_face(p: &[u8]) -> Option<Face> {
    if p.first() != Some(&1) {
        return None;
    }
    let v = get_f32s(&p[1..]);
    if v.len() != 15 {
        return None;
    }
    let mut lm = [[0f32; 2]; 5];
    for k in 0..5 {
        lm[k] = [v[5 + 2 * k], v[6 + 2 * k]];
    }
    Some(Face {
        bbox: [v[0], v[1], v[2], v[3]],
        score: v[4],
        landmarks: lm,
    })
}

struct Done {
    image: String,
    /// A new detection (renderer's image) to record.
    det: Option<Vec<u8>>,
    /// A new detection of the original (masked renderers only).
    det0: Option<Vec<u8>>,
    status: Status,
    skin: f32,
    emb: Vec<f32>,
}

impl<'a> Front<'a> {
    pub fn new(
        lfw: &'a Lfw,
        models: &Path,
        detector: &str,
        cache: &Path,
        threads: usize,
        detect_max_side: Option<u32>,
    ) -> Result<Front<'a>, EvalError> {
        let b = Bundle::open_named(models, detector)?;
        let mut opts = DetectorOptions::default();
        // Detections (and so embeddings) made at another scale are cached apart.
        let mut detector_opts_tag = String::new();
        if let Some(m) = detect_max_side.filter(|&m| Some(m) != opts.max_side) {
            opts.max_side = (m > 0).then_some(m);
            detector_opts_tag = format!("-ms{m}");
        }
        let det = TractDetector::from_bundle(&b, &opts)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("facegate-eval-{i}"))
            .stack_size(crate::crash::INFERENCE_STACK)
            .start_handler(|_| crate::crash::install_for_pool_thread())
            .build()
            .map_err(|e| EvalError::Other(format!("thread pool: {e}")))?;
        let t0 = Instant::now();
        let keys: Vec<(String, String)> = pool.install(|| {
            lfw.images
                .par_iter()
                .map(|i| -> Result<(String, String), EvalError> {
                    let p = lfw.path(i);
                    let bytes = std::fs::read(&p).map_err(io_err(&p))?;
                    Ok((i.clone(), hex(&Sha256::digest(&bytes))[..16].to_string()))
                })
                .collect::<Result<_, _>>()
        })?;
        log::info!(
            "hashed {} images in {:.1} s",
            keys.len(),
            t0.elapsed().as_secs_f64()
        );
        Ok(Front {
            lfw,
            detector: det,
            detector_name: detector.to_string(),
            detector_sha: b.sha256().to_string(),
            detector_opts_tag,
            cache: cache.to_path_buf(),
            pool,
            keys: keys.into_iter().collect(),
        })
    }

    fn key(&self, image: &str) -> Result<String, EvalError> {
        self.keys
            .get(image)
            .map(|k| format!("{image}:{k}"))
            .ok_or_else(|| EvalError::Other(format!("{image} is not in the LFW copy")))
    }

    fn det_log(&self, r: &Renderer) -> Result<RecordLog, EvalError> {
        RecordLog::open(&self.cache.join(format!(
            "det-{}-{}{}-{}-v{PIPELINE_VERSION}.log",
            self.detector_name,
            &self.detector_sha[..16],
            self.detector_opts_tag,
            r.key()
        )))
    }

    fn emb_log(&self, m: &Model, r: &Renderer) -> Result<RecordLog, EvalError> {
        RecordLog::open(&self.cache.join(format!(
            "emb-{}-{}-{}-{}{}-{}-v{PIPELINE_VERSION}.log",
            m.name,
            &m.sha256[..16],
            m.align_tag(),
            &self.detector_sha[..12],
            self.detector_opts_tag,
            r.key()
        )))
    }

    /// Embeddings of `images` under renderer `r` with model `m`, computing
    /// (and caching) what is missing. `progress` labels the log lines.
    pub fn extract(&self, m: &Model, r: &Renderer, images: &[String]) -> Result<Table, EvalError> {
        let mut elog = self.emb_log(m, r)?;
        let mut dlog = self.det_log(r)?;
        let mut d0log = if r.is_masked() {
            Some(self.det_log(&Renderer::Unmasked)?)
        } else {
            None
        };
        let keys: Vec<String> = images
            .iter()
            .map(|i| self.key(i))
            .collect::<Result<_, _>>()?;
        let todo: Vec<(String, String)> = images
            .iter()
            .zip(&keys)
            .filter(|(_, k)| elog.get(k).is_none())
            .map(|(i, k)| (i.clone(), k.clone()))
            .collect();
        if !todo.is_empty() {
            eprintln!(
                "eval: {} × {}: {} of {} images to compute ({} cached)",
                m.name,
                r.label(),
                todo.len(),
                images.len(),
                images.len() - todo.len()
            );
        }
        let t0 = Instant::now();
        let mut done_n = 0usize;
        for block in todo.chunks(64) {
            let results: Vec<Vec<Done>> = {
                let (dlog, d0log) = (&dlog, &d0log);
                self.pool.install(|| {
                    block
                        .par_chunks(8)
                        .map(|c| self.process(m, r, c, dlog, d0log.as_ref()))
                        .collect::<Result<_, EvalError>>()
                })?
            };
            for d in results.into_iter().flatten() {
                let key = self.key(&d.image)?;
                if let Some(p) = d.det {
                    dlog.insert(&key, p)?;
                }
                if let (Some(p), Some(l)) = (d.det0, d0log.as_mut()) {
                    l.insert(&key, p)?;
                }
                let mut p = vec![match d.status {
                    Status::Ok => 0u8,
                    Status::NoFace => 1,
                    Status::NoFaceBeforeMask => 2,
                }];
                put_f32s(&mut p, &[d.skin]);
                put_f32s(&mut p, &d.emb);
                elog.insert(&key, p)?;
            }
            elog.flush()?;
            dlog.flush()?;
            if let Some(l) = d0log.as_mut() {
                l.flush()?;
            }
            done_n += block.len();
            if done_n % 512 < 64 || done_n == todo.len() {
                let s = t0.elapsed().as_secs_f64();
                eprintln!(
                    "eval: {} × {}: {done_n} / {} ({:.0} s, {:.1} img/s, ~{:.0} s left)",
                    m.name,
                    r.label(),
                    todo.len(),
                    s,
                    done_n as f64 / s,
                    (todo.len() - done_n) as f64 * s / done_n as f64
                );
            }
        }
        let dim = m.embedder.dim();
        let mut t = Table {
            dim,
            index: HashMap::new(),
            status: Vec::with_capacity(images.len()),
            skin: Vec::with_capacity(images.len()),
            emb: Vec::with_capacity(images.len() * dim),
        };
        for (i, k) in images.iter().zip(&keys) {
            let p = elog
                .get(k)
                .ok_or_else(|| EvalError::Other(format!("{i}: missing after extraction")))?;
            let status = match p[0] {
                0 => Status::Ok,
                1 => Status::NoFace,
                _ => Status::NoFaceBeforeMask,
            };
            let v = get_f32s(&p[1..]);
            t.index.insert(i.clone(), t.status.len());
            t.status.push(status);
            t.skin.push(v[0]);
            if status == Status::Ok && v.len() == 1 + dim {
                t.emb.extend_from_slice(&v[1..]);
            } else {
                t.emb.extend(std::iter::repeat_n(0.0, dim));
            }
        }
        Ok(t)
    }

    fn detect_largest(&self, img: &RgbImage) -> Result<Option<Face>, EvalError> {
        Ok(largest(&self.detector.detect(img)?).cloned())
    }

    fn process(
        &self,
        m: &Model,
        r: &Renderer,
        chunk: &[(String, String)],
        dlog: &RecordLog,
        d0log: Option<&RecordLog>,
    ) -> Result<Vec<Done>, EvalError> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut crops = Vec::new();
        for (image, key) in chunk {
            let mut img = crate::face::imageio::load_rgb(&self.lfw.path(image))
                .map_err(|e| EvalError::Other(e.to_string()))?;
            let mut d = Done {
                image: image.clone(),
                det: None,
                det0: None,
                status: Status::Ok,
                skin: 0.0,
                emb: Vec::new(),
            };
            if let Some(d0log) = d0log {
                let f0 = match d0log.get(key) {
                    Some(p) => parse_face(p),
                    None => {
                        let f = self.detect_largest(&img)?;
                        d.det0 = Some(face_payload(f.as_ref()));
                        f
                    }
                };
                let Some(f0) = f0 else {
                    d.status = Status::NoFaceBeforeMask;
                    out.push(d);
                    continue;
                };
                r.paint(&mut img, &f0, image)?;
            }
            let face = match dlog.get(key) {
                Some(p) => parse_face(p),
                None => {
                    let f = self.detect_largest(&img)?;
                    d.det = Some(face_payload(f.as_ref()));
                    f
                }
            };
            let Some(face) = face else {
                d.status = Status::NoFace;
                out.push(d);
                continue;
            };
            let mut crop = align(&img, &face.landmarks, &m.align)?;
            d.skin = presence::skin_share(&crop, &m.align);
            if let Some(cut) = m.periocular {
                crate::face::periocular::grey_below(&mut crop, &m.align, cut);
            }
            crops.push((out.len(), crop));
            out.push(d);
        }
        let refs: Vec<&RgbImage> = crops.iter().map(|(_, c)| c).collect();
        let embs = m.embedder.embed_batch(&refs)?;
        for ((i, _), e) in crops.iter().zip(embs) {
            out[*i].emb = e.into_vec();
        }
        Ok(out)
    }
}
