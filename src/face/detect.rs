//! Face detection: RetinaFace-MobileNet0.25 through tract.
//!
//! [`Detector`] is the seam the rest of facegate talks to; [`TractDetector`]
//! runs the `retinaface-mnet025` bundle. The network is fully convolutional,
//! so the input size is fixed per frame size: one optimised plan is built the
//! first time a frame size is seen and cached (a camera sends one size).
//! Decoding mirrors `models/facegate_models/retina.py` exactly: anchors at
//! every stride (cell centres `(x + 0.5) * stride`, sizes from the manifest),
//! variances, score threshold, then greedy NMS in descending score order.
//!
//! Tightly cropped faces (a face filling the whole picture, cut by the frame)
//! are missed or get poor landmarks from RetinaFace, which was trained on
//! faces with context around them. The padding rule
//! ([`DetectorOptions::pad`]): when nothing is found, or when the largest
//! face's box covers at least 70% of the frame's width and height (see
//! [`fills_frame`]), the frame is padded on every side with a replicated
//! edge border of `pad` times its longer side (default 0.4) and detected
//! again; the padded result is used when it finds a face. Coordinates are
//! mapped back to the original frame (they may then lie slightly outside it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use image::RgbImage;
use serde::Serialize;
use tinyvec::TinyVec;
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, BundleError, Colour, DetectorSection, Kind, Layout};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle {name}: the model does not match its manifest: {message}")]
    Mismatch { name: String, message: String },
    #[error("bundle {name}: tract cannot load the model: {message}")]
    Load { name: String, message: String },
    #[error("image is {width}x{height}: too small to hold a face (at least {min}x{min})")]
    TooSmall { width: u32, height: u32, min: u32 },
    #[error("image is {width}x{height}: too large to detect in (at most {max} pixels; set a downscale limit)")]
    TooLarge { width: u32, height: u32, max: u64 },
    #[error("detection failed: {0}")]
    Inference(String),
    #[error("cannot start {threads} inference threads: {message}")]
    Threads { threads: usize, message: String },
}

/// One detected face, in the coordinates of the image given to the detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Face {
    /// [x0, y0, x1, y1] in continuous pixel coordinates.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose, left mouth corner, right mouth corner
    /// (left/right as seen in the image).
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    fn scaled(mut self, s: f32, dx: f32, dy: f32) -> Face {
        for (i, v) in self.bbox.iter_mut().enumerate() {
            *v = *v * s - if i % 2 == 0 { dx } else { dy };
        }
        for p in self.landmarks.iter_mut() {
            p[0] = p[0] * s - dx;
            p[1] = p[1] * s - dy;
        }
        self
    }
}

/// The largest face (by box area), if any.
pub fn largest(faces: &[Face]) -> Option<&Face> {
    faces.iter().max_by(|a, b| a.area().total_cmp(&b.area()))
}

/// Finds faces in a frame.
pub trait Detector: Send + Sync {
    /// Faces in `img`, best score first.
    fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError>;

    /// Faces in `img` as the network sees it: no downscaling and no padded
    /// retry ([`crate::face::track`] gives it regions already sized for the
    /// network). Detectors without such a distinction detect as usual.
    fn detect_raw(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
        self.detect(img)
    }
}

#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// Threads tract may use for matrix products (1 = the caller's thread only).
    pub threads: usize,
    /// Frames whose longer side exceeds this are downscaled (area average)
    /// before detection; results are scaled back. None: never downscale.
    pub max_side: Option<u32>,
    /// Replicated border (fraction of the longer side) added for a second
    /// try when nothing is found on the plain frame or a face fills the
    /// frame; 0 disables the retry.
    pub pad: f32,
    /// The padded retry is downscaled to this longer side (None: as
    /// `max_side`). It looks for faces too large for the plain frame, which
    /// stay large when downscaled; at full size it costs ~4× the plain frame
    /// (a 640×480 frame with nobody in it: 57 ms + 290 ms).
    pub pad_max_side: Option<u32>,
    /// Override the manifest's score threshold.
    pub score_threshold: Option<f32>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            threads: 1,
            max_side: Some(1280),
            pad: 0.4,
            pad_max_side: None,
            score_threshold: None,
        }
    }
}

/// The daemon's [`DetectorOptions::pad_max_side`]: a camera frame with
/// nobody in it is retried padded at this size, not at 1.8× the frame's.
pub const CAMERA_PAD_MAX_SIDE: u32 = 320;

/// Smallest frame side accepted (the coarsest stride is 32).
pub const MIN_SIDE: u32 = 16;
/// Largest frame (after downscaling) given to the network, in pixels.
pub const MAX_PIXELS: u64 = 4096 * 4096;

type Plan = Arc<TypedRunnableModel>;

/// RetinaFace through tract.
pub struct TractDetector {
    name: String,
    model: InferenceModel,
    /// Output index of loc, conf, landmarks in the model's outputs.
    order: [usize; 3],
    layout: Layout,
    colour: Colour,
    mean: [f32; 3],
    inv_std: [f32; 3],
    cfg: DetectorSection,
    opts: DetectorOptions,
    run_opts: RunOptions,
    plans: Mutex<HashMap<(u32, u32), Plan>>,
}

impl std::fmt::Debug for TractDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractDetector")
            .field("name", &self.name)
            .field("opts", &self.opts)
            .finish()
    }
}

fn executor(threads: usize) -> Result<Option<multithread::Executor>, DetectError> {
    super::tract_executor(threads, "det")
        .map_err(|message| DetectError::Threads { threads, message })
}

/// Anchors as (cx, cy, size) in the network's output order (retina.py).
pub fn anchors(cfg: &DetectorSection, width: u32, height: u32) -> Vec<[f32; 3]> {
    let mut out = Vec::new();
    for (stride, sizes) in cfg.strides.iter().zip(&cfg.anchor_sizes) {
        let s = (*stride).max(1);
        let (nx, ny) = (width.div_ceil(s), height.div_ceil(s));
        for y in 0..ny {
            for x in 0..nx {
                for size in sizes {
                    out.push([
                        (x as f32 + 0.5) * s as f32,
                        (y as f32 + 0.5) * s as f32,
                        *size,
                    ]);
                }
            }
        }
    }
    out
}

/// Greedy NMS exactly as retina.py: highest score first (stable for ties),
/// drop every later box whose IoU with a kept box exceeds `iou`.
/// Per frame there are a few dozen candidates and a few faces: both lists
/// live on the stack unless a crowd spills them to the heap.
pub fn nms(faces: &[Face], iou: f32) -> TinyVec<[usize; 8]> {
    let mut order: TinyVec<[usize; 64]> = (0..faces.len()).collect();
    order.sort_by(|&a, &b| faces[b].score.total_cmp(&faces[a].score));
    let mut keep = TinyVec::new();
    while !order.is_empty() {
        let i = order.remove(0);
        keep.push(i);
        let a = &faces[i].bbox;
        let area_a = (a[2] - a[0]) * (a[3] - a[1]);
        order.retain(|&j| {
            let b = &faces[j].bbox;
            let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0)
                * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let union = area_a + (b[2] - b[0]) * (b[3] - b[1]) - inter;
            union <= 0.0 || inter / union <= iou
        });
    }
    keep
}

/// Decode the raw outputs (loc N x 4, conf N x 2, landmarks N x 10).
pub fn decode(
    cfg: &DetectorSection,
    width: u32,
    height: u32,
    loc: &[f32],
    conf: &[f32],
    landm: &[f32],
    threshold: f32,
) -> Result<Vec<Face>, DetectError> {
    let a = anchors(cfg, width, height);
    let n = a.len();
    if loc.len() != n * 4 || conf.len() != n * 2 || landm.len() != n * 10 {
        return Err(DetectError::Inference(format!(
            "{n} anchors for {width}x{height} but outputs of {}/{}/{} values",
            loc.len(),
            conf.len(),
            landm.len()
        )));
    }
    let [vc, vs] = cfg.variances;
    let mut faces = Vec::new();
    for (i, an) in a.iter().enumerate() {
        let score = conf[i * 2 + 1];
        if score.is_nan() || score <= threshold {
            continue;
        }
        let l = &loc[i * 4..i * 4 + 4];
        let cx = an[0] + l[0] * vc * an[2];
        let cy = an[1] + l[1] * vc * an[2];
        let w = an[2] * (l[2] * vs).exp();
        let h = an[2] * (l[3] * vs).exp();
        let mut landmarks = [[0f32; 2]; 5];
        for (k, p) in landmarks.iter_mut().enumerate() {
            p[0] = an[0] + landm[i * 10 + 2 * k] * vc * an[2];
            p[1] = an[1] + landm[i * 10 + 2 * k + 1] * vc * an[2];
        }
        let face = Face {
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            score,
            landmarks,
        };
        if face
            .bbox
            .iter()
            .chain(landmarks.iter().flatten())
            .all(|v| v.is_finite())
        {
            faces.push(face);
        }
    }
    let keep = nms(&faces, cfg.nms_iou);
    Ok(keep.into_iter().map(|i| faces[i].clone()).collect())
}

/// Area-average downscale by an arbitrary factor (>= 1).
pub fn downscale(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    image::imageops::resize(
        img,
        w.max(1),
        h.max(1),
        image::imageops::FilterType::Triangle,
    )
}

/// Pad `img` by `p` pixels on every side, replicating the edge pixels.
pub fn pad_replicate(img: &RgbImage, p: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w + 2 * p, h + 2 * p, |x, y| {
        let sx = (x as i64 - p as i64).clamp(0, w as i64 - 1) as u32;
        let sy = (y as i64 - p as i64).clamp(0, h as i64 - 1) as u32;
        *img.get_pixel(sx, sy)
    })
}

impl TractDetector {
    pub fn from_bundle(
        bundle: &Bundle,
        opts: &DetectorOptions,
    ) -> Result<TractDetector, DetectError> {
        bundle.expect_kind(Kind::Detector)?;
        let m = &bundle.manifest;
        let name = m.name.clone();
        let mismatch = |message: String| DetectError::Mismatch {
            name: name.clone(),
            message,
        };
        let load = |e: anyhow::Error| DetectError::Load {
            name: name.clone(),
            message: format!("{e:#}"),
        };
        let cfg = m
            .detector
            .clone()
            .ok_or_else(|| mismatch("no [detector] section".into()))?;
        if cfg.outputs.len() != 3 {
            return Err(mismatch(format!(
                "detector.outputs {:?} must name loc, conf and landmarks",
                cfg.outputs
            )));
        }
        let mut reader = bundle.model_bytes();
        // The CPU policy (AMX off unless asked) before tract picks kernels.
        crate::cpu::ensure();
        let model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .model_for_read(&mut reader)
            .map_err(load)?;
        let names = super::output_names(&model).map_err(load)?;
        let mut order = [0usize; 3];
        for (k, want) in cfg.outputs.iter().enumerate() {
            order[k] = names.iter().position(|n| n == want).ok_or_else(|| {
                mismatch(format!("the model's outputs are {names:?}, no {want:?}"))
            })?;
        }
        let run_opts = RunOptions {
            executor: executor(opts.threads)?,
            ..Default::default()
        };
        Ok(TractDetector {
            name: m.name.clone(),
            model,
            order,
            layout: m.input.layout,
            colour: m.input.colour,
            mean: m.input.mean,
            inv_std: [
                1.0 / m.input.std[0],
                1.0 / m.input.std[1],
                1.0 / m.input.std[2],
            ],
            cfg,
            opts: opts.clone(),
            run_opts,
            plans: Mutex::new(HashMap::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn options(&self) -> &DetectorOptions {
        &self.opts
    }

    /// The optimised plan for a frame size (built once, then cached).
    fn plan(&self, w: u32, h: u32) -> Result<Plan, DetectError> {
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| DetectError::Inference("plan cache poisoned".into()))?;
        if let Some(p) = plans.get(&(w, h)) {
            return Ok(p.clone());
        }
        let load = |e: anyhow::Error| DetectError::Load {
            name: self.name.clone(),
            message: format!("{e:#}"),
        };
        let t0 = std::time::Instant::now();
        let shape = match self.layout {
            Layout::Nchw => [1, 3, h as usize, w as usize],
            Layout::Nhwc => [1, h as usize, w as usize, 3],
        };
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable_with_options(&self.run_opts))
            .map_err(load)?;
        log::info!(
            "detector plan for {w}x{h} optimised in {:.0} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        // A camera sends one size; keep the cache bounded for batch use.
        if plans.len() >= 8 {
            plans.clear();
        }
        plans.insert((w, h), plan.clone());
        Ok(plan)
    }

    fn input_tensor(&self, img: &RgbImage) -> Result<Tensor, DetectError> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let order: [usize; 3] = match self.colour {
            Colour::Rgb => [0, 1, 2],
            Colour::Bgr => [2, 1, 0],
        };
        let mut data = vec![0f32; 3 * w * h];
        let raw = img.as_raw();
        match self.layout {
            Layout::Nchw => {
                for (p, px) in raw.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        data[c * w * h + p] =
                            (px[order[c]] as f32 - self.mean[c]) * self.inv_std[c];
                    }
                }
            }
            Layout::Nhwc => {
                for (p, px) in raw.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        data[p * 3 + c] = (px[order[c]] as f32 - self.mean[c]) * self.inv_std[c];
                    }
                }
            }
        }
        let shape = match self.layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        };
        Tensor::from_shape(&shape, &data).map_err(|e| DetectError::Inference(format!("{e:#}")))
    }

    /// Run the network on `img` as is (no downscale, no padding).
    pub fn detect_raw(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
        let (w, h) = img.dimensions();
        if w < MIN_SIDE || h < MIN_SIDE {
            return Err(DetectError::TooSmall {
                width: w,
                height: h,
                min: MIN_SIDE,
            });
        }
        if w as u64 * h as u64 > MAX_PIXELS {
            return Err(DetectError::TooLarge {
                width: w,
                height: h,
                max: MAX_PIXELS,
            });
        }
        let plan = self.plan(w, h)?;
        let input = self.input_tensor(img)?;
        let out = plan
            .run(tvec!(input.into()))
            .map_err(|e| DetectError::Inference(format!("{e:#}")))?;
        let get = |k: usize| -> Result<Vec<f32>, DetectError> {
            let t = out
                .get(self.order[k])
                .ok_or_else(|| DetectError::Inference("missing output".into()))?;
            let v = t
                .to_plain_array_view::<f32>()
                .map_err(|e| DetectError::Inference(format!("{e:#}")))?;
            Ok(v.iter().copied().collect())
        };
        let (loc, conf, landm) = (get(0)?, get(1)?, get(2)?);
        let thr = self
            .opts
            .score_threshold
            .unwrap_or(self.cfg.score_threshold);
        decode(&self.cfg, w, h, &loc, &conf, &landm, thr)
    }

    /// Downscale to `max_side` if needed, then detect; coordinates in
    /// `img`'s frame.
    fn detect_scaled(
        &self,
        img: &RgbImage,
        max_side: Option<u32>,
    ) -> Result<Vec<Face>, DetectError> {
        let (w, h) = img.dimensions();
        let long = w.max(h);
        match max_side {
            Some(m) if m >= MIN_SIDE && long > m => {
                let s = long as f32 / m as f32;
                let nw = ((w as f32 / s).round() as u32).max(1);
                let nh = ((h as f32 / s).round() as u32).max(1);
                let small = downscale(img, nw, nh);
                let (sx, sy) = (w as f32 / nw as f32, h as f32 / nh as f32);
                // Uniform scale is within a rounding of sx and sy.
                let s = (sx + sy) / 2.0;
                Ok(self
                    .detect_raw(&small)?
                    .into_iter()
                    .map(|f| f.scaled(s, 0.0, 0.0))
                    .collect())
            }
            _ => self.detect_raw(img),
        }
    }
}

impl Detector for TractDetector {
    fn detect_raw(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
        TractDetector::detect_raw(self, img)
    }

    fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
        let (w, h) = img.dimensions();
        if w < MIN_SIDE || h < MIN_SIDE {
            return Err(DetectError::TooSmall {
                width: w,
                height: h,
                min: MIN_SIDE,
            });
        }
        let faces = self.detect_scaled(img, self.opts.max_side)?;
        if self.opts.pad <= 0.0 || !(faces.is_empty() || fills_frame(&faces, w, h)) {
            return Ok(faces);
        }
        let p = ((w.max(h) as f32 * self.opts.pad).round() as u32).max(MIN_SIDE);
        log::debug!(
            "no face clear of the border in {w}x{h}: retrying with a {p} px replicated border"
        );
        let padded = pad_replicate(img, p);
        let pad_side = match (self.opts.max_side, self.opts.pad_max_side) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let again: Vec<Face> = self
            .detect_scaled(&padded, pad_side)?
            .into_iter()
            .map(|f| f.scaled(1.0, p as f32, p as f32))
            .collect();
        // Keep the plain result if padding loses the face.
        Ok(if again.is_empty() { faces } else { again })
    }
}

/// True when the largest face's box covers at least 70% of the frame's
/// width and height: a tight crop with no background, whose landmarks
/// improve with padding. (A face merely cut by one edge of a bigger photo
/// does not count: replicating that edge smears the face outwards.)
pub fn fills_frame(faces: &[Face], w: u32, h: u32) -> bool {
    largest(faces).is_some_and(|f| f.width() >= 0.7 * w as f32 && f.height() >= 0.7 * h as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DetectorSection {
        DetectorSection {
            outputs: vec!["loc".into(), "conf".into(), "landmarks".into()],
            strides: vec![8, 16, 32],
            anchor_sizes: vec![vec![16.0, 32.0], vec![64.0, 128.0], vec![256.0, 512.0]],
            variances: [0.1, 0.2],
            score_threshold: 0.9,
            nms_iou: 0.4,
        }
    }

    #[test]
    fn anchor_count_and_order_match_retina_py() {
        let a = anchors(&cfg(), 33, 17);
        // ceil(33/8)*ceil(17/8)*2 + ceil(33/16)*ceil(17/16)*2 + 2*1*2
        assert_eq!(a.len(), 5 * 3 * 2 + 3 * 2 * 2 + 2 * 2);
        assert_eq!(a[0], [4.0, 4.0, 16.0]);
        assert_eq!(a[1], [4.0, 4.0, 32.0]);
        assert_eq!(a[2], [12.0, 4.0, 16.0]);
        assert_eq!(a[30], [8.0, 8.0, 64.0]);
        assert_eq!(*a.last().unwrap(), [48.0, 16.0, 512.0]);
    }

    #[test]
    fn decode_applies_variances_threshold_and_nms() {
        let c = cfg();
        let n = anchors(&c, 16, 16).len();
        let mut loc = vec![0f32; n * 4];
        let mut conf = vec![0f32; n * 2];
        let landm = vec![0f32; n * 10];
        // Anchor 0 (4,4,16): moved by +1 variance unit in x, scaled w by e^0.2.
        loc[0] = 1.0;
        loc[2] = 1.0;
        conf[1] = 0.95;
        // Anchor 1 (4,4,32) overlaps anchor 0 strongly but scores lower.
        conf[3] = 0.93;
        // Anchor 2 (12,4,16) is below the threshold.
        conf[5] = 0.5;
        let f = decode(&c, 16, 16, &loc, &conf, &landm, 0.9).unwrap();
        assert_eq!(f.len(), 2, "{f:?}");
        let w = 16.0 * 0.2f32.exp();
        let cx = 4.0 + 0.1 * 16.0;
        assert!((f[0].bbox[0] - (cx - w / 2.0)).abs() < 1e-5);
        assert!((f[0].bbox[3] - 12.0).abs() < 1e-5);
        assert_eq!(f[0].landmarks[0], [4.0, 4.0]);
        // IoU of a 16-box in a 32-box is 0.25 < 0.4: both kept.
        assert_eq!(f[1].score, 0.93);
        let f = decode(&c, 16, 16, &loc, &conf, &landm, 0.94).unwrap();
        assert_eq!(f.len(), 1);
        assert!(decode(&c, 16, 16, &loc[4..], &conf, &landm, 0.9).is_err());
    }

    #[test]
    fn nms_drops_overlaps() {
        let face = |x: f32, s: f32| Face {
            bbox: [x, 0.0, x + 10.0, 10.0],
            score: s,
            landmarks: [[0.0; 2]; 5],
        };
        let faces = [face(0.0, 0.8), face(1.0, 0.9), face(20.0, 0.7)];
        assert_eq!(nms(&faces, 0.4).as_slice(), &[1, 2]);
    }

    #[test]
    fn padding_replicates_edges() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 100, 0, 0]));
        let p = pad_replicate(&img, 2);
        assert_eq!(p.dimensions(), (6, 5));
        assert_eq!(p.get_pixel(0, 0)[0], 0);
        assert_eq!(p.get_pixel(5, 4)[0], 100);
    }
}
