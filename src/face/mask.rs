//! Synthetic face masks painted onto photos, from the detector's landmarks.
//!
//! Two renderers:
//! * procedural ([`paint`] with a built-in [`MaskStyle`]): surgical masks
//!   (blue, white, green; pleats, bound edges, nose wire, ear loops), black
//!   cloth, patterned cloth, KN95 (folded two-panel shape) and N95 (moulded
//!   cup with straps). Shapes are defined in a face frame fitted to the five
//!   landmarks, cover the nose bridge to under the chin and cheek to cheek,
//!   have soft (anti-aliased) edges, curved-surface shading that follows the
//!   scene's brightness, and small seeded variations (colour, fit, pattern)
//!   so one seed always gives the same picture;
//! * template ([`template`], style `template:<dir>:<name>`): MaskTheFace
//!   RGBA templates read at run time and warped onto six anchor points. Used
//!   by evaluation only; nothing from those templates ships.
//!
//! Face frame: unit = the distance between the eyes, origin = the midpoint
//! of the eyes, u to the right (in the image), v down. The landmarks of a
//! frontal face sit near: eyes (+-0.5, 0), nose (0, 0.57), mouth corners
//! (+-0.41, 1.16); the chin is near v = 1.9 and the cheeks near u = +-1.05.

pub mod template;

use std::path::PathBuf;
use std::str::FromStr;

use image::RgbImage;

use crate::face::align::{apply, invert, similarity, Affine, AlignError};
use crate::face::detect::Face;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("unknown mask style {0:?} (surgical, surgical-white, surgical-green, black-cloth, patterned, kn95, n95, template:<dir>:<name>)")]
    Style(String),
    #[error(transparent)]
    Align(#[from] AlignError),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedural {
    SurgicalBlue,
    SurgicalWhite,
    SurgicalGreen,
    BlackCloth,
    Patterned,
    Kn95,
    N95,
}

impl Procedural {
    pub const ALL: [Procedural; 7] = [
        Procedural::SurgicalBlue,
        Procedural::SurgicalWhite,
        Procedural::SurgicalGreen,
        Procedural::BlackCloth,
        Procedural::Patterned,
        Procedural::Kn95,
        Procedural::N95,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Procedural::SurgicalBlue => "surgical",
            Procedural::SurgicalWhite => "surgical-white",
            Procedural::SurgicalGreen => "surgical-green",
            Procedural::BlackCloth => "black-cloth",
            Procedural::Patterned => "patterned",
            Procedural::Kn95 => "kn95",
            Procedural::N95 => "n95",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskStyle {
    Procedural(Procedural),
    /// A MaskTheFace template: folder holding masks.cfg, template name.
    Template {
        dir: PathBuf,
        name: String,
    },
}

impl FromStr for MaskStyle {
    type Err = MaskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("template:") {
            let (dir, name) = rest
                .rsplit_once(':')
                .ok_or_else(|| MaskError::Style(s.to_string()))?;
            if dir.is_empty() || name.is_empty() {
                return Err(MaskError::Style(s.to_string()));
            }
            return Ok(MaskStyle::Template {
                dir: PathBuf::from(dir),
                name: name.to_string(),
            });
        }
        let key = s.to_ascii_lowercase().replace('_', "-");
        let alias = match key.as_str() {
            "surgical-blue" => "surgical",
            "cloth" | "black" => "black-cloth",
            "pattern" | "patterned-cloth" => "patterned",
            other => other,
        };
        Procedural::ALL
            .into_iter()
            .find(|p| p.name() == alias)
            .map(MaskStyle::Procedural)
            .ok_or_else(|| MaskError::Style(s.to_string()))
    }
}

/// Small deterministic PRNG (SplitMix64): the same seed gives the same mask
/// on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_f00d_cafe_d00d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        let x = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Five-landmark template of the face frame (see the module docs).
pub const FRAME_LANDMARKS: [[f32; 2]; 5] = [
    [-0.5, 0.0],
    [0.5, 0.0],
    [0.0, 0.571],
    [-0.414, 1.157],
    [0.414, 1.157],
];

/// The face frame fitted to a face's landmarks.
#[derive(Debug, Clone)]
pub struct FaceFrame {
    /// Frame -> image.
    pub to_image: Affine,
    /// Image -> frame.
    pub to_frame: Affine,
    /// Image pixels per frame unit.
    pub scale: f32,
    /// Nose and mouth-centre positions in the frame (u follows head yaw).
    pub nose: [f32; 2],
    pub mouth: [f32; 2],
}

impl FaceFrame {
    pub fn new(landmarks: &[[f32; 2]; 5]) -> Result<FaceFrame, AlignError> {
        let to_image = similarity(&FRAME_LANDMARKS, landmarks)?;
        let to_frame = invert(&to_image)?;
        let scale = (to_image[0][0].powi(2) + to_image[1][0].powi(2)).sqrt() as f32;
        let nose = apply(&to_frame, landmarks[2]);
        let l = apply(&to_frame, landmarks[3]);
        let r = apply(&to_frame, landmarks[4]);
        Ok(FaceFrame {
            to_image,
            to_frame,
            scale,
            nose,
            mouth: [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0],
        })
    }

    /// Image-space bounding box of a frame-space rectangle, clipped to w x h.
    pub fn image_bounds(
        &self,
        u0: f32,
        v0: f32,
        u1: f32,
        v1: f32,
        w: u32,
        h: u32,
    ) -> Option<[u32; 4]> {
        let pts = [[u0, v0], [u1, v0], [u0, v1], [u1, v1]].map(|p| apply(&self.to_image, p));
        let x0 = pts
            .iter()
            .map(|p| p[0])
            .fold(f32::INFINITY, f32::min)
            .floor()
            .max(0.0);
        let y0 = pts
            .iter()
            .map(|p| p[1])
            .fold(f32::INFINITY, f32::min)
            .floor()
            .max(0.0);
        let x1 = pts
            .iter()
            .map(|p| p[0])
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil()
            .min(w as f32);
        let y1 = pts
            .iter()
            .map(|p| p[1])
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil()
            .min(h as f32);
        (x1 > x0 && y1 > y0 && x0.is_finite() && y0.is_finite())
            .then_some([x0 as u32, y0 as u32, x1 as u32, y1 as u32])
    }
}

/// Mean luminance of the skin between and below the eyes (above any mask),
/// relative to a well-lit face; used so that masks are as bright as the scene.
fn scene_light(img: &RgbImage, frame: &FaceFrame) -> f32 {
    let (mut sum, mut n) = (0f32, 0f32);
    for i in 0..9 {
        for j in 0..5 {
            let u = -0.25 + 0.5 * j as f32 / 4.0;
            let v = -0.05 + 0.25 * i as f32 / 8.0;
            let p = apply(&frame.to_image, [u, v]);
            let (x, y) = (p[0].floor() as i64, p[1].floor() as i64);
            if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
                let px = img.get_pixel(x as u32, y as u32);
                sum += 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32;
                n += 1.0;
            }
        }
    }
    if n == 0.0 {
        return 1.0;
    }
    // Skin tone and light are confounded here, so only a mild correction.
    (0.8 + 0.2 * (sum / n / 150.0)).clamp(0.75, 1.05)
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Cheap deterministic value noise in [0, 1) (fabric grain).
fn hash2(x: i32, y: i32, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ seed.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h & 0xffff) as f32 / 65536.0
}

fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (xi, yi) = (x0 as i32, y0 as i32);
    let a = hash2(xi, yi, seed);
    let b = hash2(xi + 1, yi, seed);
    let c = hash2(xi, yi + 1, seed);
    let d = hash2(xi + 1, yi + 1, seed);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    (a * (1.0 - sx) + b * sx) * (1.0 - sy) + (c * (1.0 - sx) + d * sx) * sy
}

/// The per-face random choices of one mask.
#[derive(Debug, Clone)]
struct Fit {
    top: f32,
    bottom: f32,
    half_width: f32,
    colour: [f32; 3],
    accent: [f32; 3],
    pleats: u32,
    pattern: u32,
    phase: f32,
    pattern_scale: f32,
    valve: f32,
    seed: u32,
}

fn jitter(rng: &mut Rng, c: [f32; 3], amount: f32) -> [f32; 3] {
    let k = rng.range(-amount, amount);
    c.map(|v| (v + k + rng.range(-amount / 3.0, amount / 3.0)).clamp(0.0, 255.0))
}

fn fit(style: Procedural, rng: &mut Rng) -> Fit {
    let base = match style {
        Procedural::SurgicalBlue => [118.0, 170.0, 212.0],
        Procedural::SurgicalWhite => [236.0, 238.0, 240.0],
        Procedural::SurgicalGreen => [132.0, 196.0, 172.0],
        Procedural::BlackCloth => [30.0, 30.0, 34.0],
        Procedural::Kn95 => [238.0, 236.0, 232.0],
        Procedural::N95 => [228.0, 226.0, 220.0],
        Procedural::Patterned => {
            const PALETTE: [[f32; 3]; 6] = [
                [40.0, 60.0, 120.0],
                [150.0, 40.0, 50.0],
                [230.0, 200.0, 200.0],
                [60.0, 110.0, 70.0],
                [220.0, 210.0, 170.0],
                [90.0, 70.0, 130.0],
            ];
            PALETTE[rng.below(PALETTE.len() as u64) as usize]
        }
    };
    let accent = match style {
        Procedural::Patterned => {
            const ACCENTS: [[f32; 3]; 4] = [
                [245.0, 245.0, 240.0],
                [250.0, 210.0, 60.0],
                [20.0, 20.0, 30.0],
                [230.0, 120.0, 150.0],
            ];
            ACCENTS[rng.below(ACCENTS.len() as u64) as usize]
        }
        Procedural::SurgicalWhite => [205.0, 215.0, 235.0],
        _ => [245.0, 245.0, 245.0],
    };
    Fit {
        top: rng.range(-0.04, 0.04),
        bottom: rng.range(-0.06, 0.06),
        half_width: rng.range(-0.05, 0.05),
        colour: jitter(rng, base, 10.0),
        accent,
        pleats: 3 + rng.below(2) as u32,
        pattern: rng.below(3) as u32,
        phase: rng.range(0.0, 1.0),
        pattern_scale: rng.range(0.8, 1.25),
        valve: if rng.below(3) == 0 {
            rng.range(-1.0, 1.0).signum()
        } else {
            0.0
        },
        seed: rng.next_u64() as u32,
    }
}

/// Distance to the inside of a shape in frame units (> 0 inside) and the
/// surface colour there, before lighting.
struct Sample {
    inside: f32,
    colour: [f32; 3],
    /// Surface shading factor (curvature, folds).
    shade: f32,
}

/// Top edge, bottom edge, and half-width of the common mask outline.
fn outline(style: Procedural, f: &Fit, ff: &FaceFrame, u: f32) -> (f32, f32, f32, f32) {
    let c = ff.nose[0];
    // Cheek-to-cheek span (the face edges hardly move with yaw; the centre does).
    let (left, right) = (-1.04 - f.half_width, 1.04 + f.half_width);
    let half = if u < c { c - left } else { right - c };
    let x = ((u - c) / half).clamp(-1.5, 1.5);
    let chin = ff.mouth[1] + 0.80 + f.bottom;
    let (top, bottom) = match style {
        Procedural::Kn95 => (0.22 + f.top + 0.24 * x.abs(), chin + 0.08 - 0.62 * x.abs()),
        Procedural::N95 => {
            // Ellipse around the mouth/nose, returned as a top/bottom pair.
            let cy = (0.24 + chin + 0.06) / 2.0;
            let ry = (chin + 0.06 - 0.24 - f.top) / 2.0;
            let e = (1.0 - (x / 0.95).powi(2)).max(0.0).sqrt();
            (cy - ry * e, cy + ry * e)
        }
        Procedural::BlackCloth | Procedural::Patterned => {
            (0.26 + f.top + 0.16 * x * x, chin + 0.06 - 0.50 * x * x)
        }
        _ => (0.27 + f.top + 0.08 * x * x, chin - 0.50 * x * x),
    };
    (x, top, bottom, half)
}

fn sample(style: Procedural, f: &Fit, ff: &FaceFrame, u: f32, v: f32) -> Sample {
    let (x, top, bottom, half) = outline(style, f, ff, u);
    let side = match style {
        Procedural::N95 => 0.95 - x.abs(),
        _ => 1.0 - x.abs(),
    } * half;
    let inside = (v - top).min(bottom - v).min(side);
    let y = ((v - top) / (bottom - top).max(1e-3)).clamp(0.0, 1.0);
    // Curved surface: brighter in the middle, darker towards cheeks and chin.
    let mut shade = 1.0 - 0.28 * x * x - 0.18 * y.powi(3);
    let mut colour = f.colour;
    let grain = value_noise(u * 60.0, v * 60.0, f.seed) - 0.5;
    match style {
        Procedural::SurgicalBlue | Procedural::SurgicalWhite | Procedural::SurgicalGreen => {
            // Pleats: bands that are lit on top and shadowed at the fold.
            let band0 = 0.16;
            let t = ((y - band0) / (1.0 - 2.0 * band0)).clamp(0.0, 0.999) * f.pleats as f32;
            if y > band0 && y < 1.0 - band0 {
                let k = t.fract();
                shade *= 0.86 + 0.16 * k - 0.10 * smoothstep(0.9, 1.0, k);
            }
            // Bound edges and the nose wire.
            let edge = inside.min(0.07);
            if edge < 0.06 {
                shade *= 0.93;
            }
            if (v - top) < 0.05 && (u - ff.nose[0]).abs() < 0.35 {
                shade *= 0.9;
            }
            shade *= 1.0 + 0.03 * grain;
        }
        Procedural::BlackCloth => {
            let weave = value_noise(u * 140.0, v * 140.0, f.seed ^ 7) - 0.5;
            shade *= 1.0 + 0.35 * weave + 0.2 * grain;
            // Centre seam along the nose line.
            let seam = (u - ff.nose[0] - (ff.mouth[0] - ff.nose[0]) * (v - ff.nose[1])).abs();
            if seam < 0.015 {
                shade *= 0.6;
            }
        }
        Procedural::Patterned => {
            let s = 7.0 * f.pattern_scale;
            let (pu, pv) = (u * s + f.phase, v * s + f.phase * 0.7);
            let on = match f.pattern {
                // Polka dots.
                0 => {
                    let row = pv.floor();
                    let du = (pu + 0.5 * (row as i32 & 1) as f32).fract() - 0.5;
                    let dv = pv.fract() - 0.5;
                    smoothstep(0.26, 0.20, (du * du + dv * dv).sqrt())
                }
                // Diagonal stripes.
                1 => {
                    smoothstep(0.05, 0.12, ((pu + pv) * 0.7).fract() - 0.5).min(1.0)
                        * smoothstep(0.5, 0.45, ((pu + pv) * 0.7).fract())
                }
                // Gingham check.
                _ => {
                    let a = (pu.fract() < 0.5) as i32 as f32;
                    let b = (pv.fract() < 0.5) as i32 as f32;
                    0.5 * (a + b)
                }
            };
            for (c, a) in colour.iter_mut().zip(f.accent) {
                *c = *c * (1.0 - on) + a * on;
            }
            shade *= 1.0 + 0.12 * grain;
            let seam = (u - ff.nose[0] - (ff.mouth[0] - ff.nose[0]) * (v - ff.nose[1])).abs();
            if seam < 0.012 {
                shade *= 0.75;
            }
        }
        Procedural::Kn95 => {
            // Two flat panels folded along the centre line: one faces the light.
            let centre = ff.nose[0] + (ff.mouth[0] - ff.nose[0]) * (v - ff.nose[1]);
            let d = u - centre;
            shade = if d < 0.0 { 0.97 } else { 0.84 } - 0.12 * x * x;
            if d.abs() < 0.02 {
                shade *= 0.8;
            }
            // Heat-welded rim with a dotted seam.
            if inside < 0.07 {
                shade *= 0.92;
                let dots = value_noise(u * 45.0, v * 45.0, 3);
                if dots > 0.7 {
                    shade *= 0.9;
                }
            }
            shade *= 1.0 + 0.04 * grain;
        }
        Procedural::N95 => {
            // Moulded cup: a dome, a rim, maybe an exhalation valve.
            let cy = (top + bottom) / 2.0;
            let ry = ((bottom - top) / 2.0).max(1e-3);
            let r2 = (x / 0.95).powi(2) + ((v - cy) / ry).powi(2);
            shade = 1.0 - 0.18 * r2 - 0.06 * (v - cy) / ry;
            if inside < 0.05 {
                shade *= 0.88;
            }
            if f.valve != 0.0 {
                let (vu, vv) = (ff.nose[0] + 0.45 * f.valve, ff.mouth[1] + 0.15);
                let d = ((u - vu).powi(2) + (v - vv).powi(2)).sqrt();
                if d < 0.2 {
                    colour = [70.0, 72.0, 78.0];
                    shade = 0.9 - 0.3 * d + if d > 0.16 { -0.2 } else { 0.0 };
                }
            }
            shade *= 1.0 + 0.05 * grain;
        }
    }
    Sample {
        inside,
        colour,
        shade,
    }
}

/// Ear loops / straps as line segments in the frame (from, to, colour).
/// A strap: from, to, colour, half-thickness (frame units).
type Strap = ([f32; 2], [f32; 2], [f32; 3], f32);

fn straps(style: Procedural, f: &Fit, ff: &FaceFrame) -> Vec<Strap> {
    let chin = ff.mouth[1] + 0.80 + f.bottom;
    let loop_col = match style {
        Procedural::BlackCloth => [25.0, 25.0, 28.0],
        Procedural::Patterned => f.colour,
        _ => [238.0, 238.0, 238.0],
    };
    let w = 1.04 + f.half_width;
    match style {
        Procedural::N95 => vec![
            ([-0.85, 0.55], [-1.35, 0.25], [215.0, 205.0, 120.0], 0.035),
            ([0.85, 0.55], [1.35, 0.25], [215.0, 205.0, 120.0], 0.035),
            (
                [-0.8, chin - 0.35],
                [-1.3, chin - 0.2],
                [215.0, 205.0, 120.0],
                0.035,
            ),
            (
                [0.8, chin - 0.35],
                [1.3, chin - 0.2],
                [215.0, 205.0, 120.0],
                0.035,
            ),
        ],
        _ => vec![
            ([-w, 0.40], [-1.32, 0.38], loop_col, 0.022),
            ([w, 0.40], [1.32, 0.38], loop_col, 0.022),
            ([-w + 0.05, chin - 0.5], [-1.3, 0.62], loop_col, 0.022),
            ([w - 0.05, chin - 0.5], [1.3, 0.62], loop_col, 0.022),
        ],
    }
}

fn seg_dist(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let l2 = dx * dx + dy * dy;
    let t = if l2 > 0.0 {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((p[0] - a[0] - t * dx).powi(2) + (p[1] - a[1] - t * dy).powi(2)).sqrt()
}

/// Paint a procedural mask on `face`.
pub fn paint_procedural(
    img: &mut RgbImage,
    face: &Face,
    style: Procedural,
    seed: u64,
) -> Result<(), MaskError> {
    let ff = FaceFrame::new(&face.landmarks)?;
    let mut rng = Rng::new(seed);
    let f = fit(style, &mut rng);
    let light = scene_light(img, &ff);
    let (w, h) = img.dimensions();
    let Some([x0, y0, x1, y1]) = ff.image_bounds(-1.45, -0.1, 1.45, 2.4, w, h) else {
        return Ok(());
    };
    // Soft edge: about 1.2 image pixels, in frame units.
    let soft = 1.2 / ff.scale.max(1e-3);
    let straps = straps(style, &f, &ff);
    for y in y0..y1 {
        for x in x0..x1 {
            let p = apply(&ff.to_frame, [x as f32 + 0.5, y as f32 + 0.5]);
            let (u, v) = (p[0], p[1]);
            let s = sample(style, &f, &ff, u, v);
            let mut alpha = smoothstep(-soft, soft, s.inside);
            let mut col = s.colour.map(|c| c * s.shade * light);
            if alpha < 1.0 {
                // Straps show where the mask body does not.
                for (a, b, c, t) in &straps {
                    let d = seg_dist([u, v], *a, *b);
                    let sa = smoothstep(t + soft, *t - soft, d) * 0.95;
                    if sa > alpha {
                        alpha = sa;
                        col = c.map(|c| c * light * 0.95);
                    }
                }
            }
            if alpha <= 0.0 {
                continue;
            }
            let px = img.get_pixel_mut(x, y);
            for c in 0..3 {
                let m = col[c].clamp(0.0, 255.0);
                px[c] = (px[c] as f32 * (1.0 - alpha) + m * alpha)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(())
}

/// Paint a mask of `style` on `face` (procedural or template).
pub fn paint(
    img: &mut RgbImage,
    face: &Face,
    style: &MaskStyle,
    seed: u64,
) -> Result<(), MaskError> {
    match style {
        MaskStyle::Procedural(p) => paint_procedural(img, face, *p, seed),
        MaskStyle::Template { dir, name } => {
            let set = template::TemplateSet::load(dir)?;
            set.paint(img, face, name)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_parse() {
        assert_eq!(
            "surgical".parse::<MaskStyle>().unwrap(),
            MaskStyle::Procedural(Procedural::SurgicalBlue)
        );
        assert_eq!(
            "KN95".parse::<MaskStyle>().unwrap(),
            MaskStyle::Procedural(Procedural::Kn95)
        );
        assert_eq!(
            "template:/a/b:cloth".parse::<MaskStyle>().unwrap(),
            MaskStyle::Template {
                dir: "/a/b".into(),
                name: "cloth".into()
            }
        );
        assert!("gasmask".parse::<MaskStyle>().is_err());
        assert!("template:nodir".parse::<MaskStyle>().is_err());
    }

    #[test]
    fn rng_is_reproducible() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .scan(Rng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(1);
        assert!((0..1000)
            .map(|_| r.range(2.0, 3.0))
            .all(|x| (2.0..3.0).contains(&x)));
    }

    #[test]
    fn frame_of_the_frame_template_is_identity() {
        let ff = FaceFrame::new(&FRAME_LANDMARKS).unwrap();
        assert!((ff.scale - 1.0).abs() < 1e-5);
        assert!(ff.nose[0].abs() < 1e-4);
    }
}
