//! Minimal PNG charts drawn with `image` (no font, no system library):
//! axes, decade/tenth grid lines and coloured curves or histograms. The
//! axis ranges and colours are stated in the caption written next to each
//! plot in the report.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::EvalError;

pub const COLOURS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
];
pub const COLOUR_NAMES: [&str; 6] = ["blue", "red", "green", "orange", "purple", "cyan"];

const W: u32 = 720;
const H: u32 = 480;
const M: i64 = 40;

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && x < W as i64 && y < H as i64 {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], thick: i64) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
    for k in 0..=n {
        let t = k as f64 / n as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        for dx in 0..thick {
            for dy in 0..thick {
                put(img, x as i64 + dx, y as i64 + dy, c);
            }
        }
    }
}

fn frame() -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (x0, y0, x1, y1) = (
        M as f64,
        M as f64,
        (W as i64 - M) as f64,
        (H as i64 - M) as f64,
    );
    for (a, b) in [((x0, y1), (x1, y1)), ((x0, y0), (x0, y1))] {
        line(&mut img, a, b, [0, 0, 0], 2);
    }
    img
}

fn to_px(fx: f64, fy: f64) -> (f64, f64) {
    let (w, h) = ((W as i64 - 2 * M) as f64, (H as i64 - 2 * M) as f64);
    (M as f64 + fx * w, (H as i64 - M) as f64 - fy * h)
}

fn save(img: &RgbImage, path: &Path) -> Result<(), EvalError> {
    img.save(path).map_err(|e| EvalError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// ROC: x = FAR on a log axis from 10^`lo_decade` to 1 (grid line per
/// decade), y = TAR from `y_lo` to 1 (grid line per 0.1).
pub fn roc(
    path: &Path,
    curves: &[Vec<(f64, f64)>],
    lo_decade: i32,
    y_lo: f64,
) -> Result<(), EvalError> {
    let mut img = frame();
    let span = -lo_decade as f64;
    let fx = |far: f64| (far.max(1e-12).log10() - lo_decade as f64) / span;
    let fy = |tar: f64| (tar - y_lo) / (1.0 - y_lo);
    for d in lo_decade..=0 {
        let x = fx(10f64.powi(d));
        line(&mut img, to_px(x, 0.0), to_px(x, 1.0), [220, 220, 220], 1);
    }
    let mut t = y_lo;
    while t <= 1.0 + 1e-9 {
        line(
            &mut img,
            to_px(0.0, fy(t)),
            to_px(1.0, fy(t)),
            [220, 220, 220],
            1,
        );
        t += 0.1;
    }
    for (c, pts) in curves.iter().enumerate() {
        let col = COLOURS[c % COLOURS.len()];
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.0 >= 10f64.powi(lo_decade))
            .map(|&(a, b)| to_px(fx(a), fy(b.max(y_lo))))
            .collect();
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], col, 2);
        }
    }
    save(&img, path)
}

/// Overlaid histograms (each normalised to its own peak) of scores in
/// [`lo`, `hi`], `bins` bins; grid line every 0.1.
pub fn histograms(
    path: &Path,
    series: &[&[f32]],
    lo: f32,
    hi: f32,
    bins: usize,
) -> Result<(), EvalError> {
    let mut img = frame();
    let mut v = lo;
    while v <= hi + 1e-6 {
        let x = ((v - lo) / (hi - lo)) as f64;
        line(&mut img, to_px(x, 0.0), to_px(x, 1.0), [220, 220, 220], 1);
        v += 0.1;
    }
    for (c, s) in series.iter().enumerate() {
        let mut h = vec![0u64; bins];
        for &x in s.iter() {
            if x >= lo && x < hi {
                h[(((x - lo) / (hi - lo)) * bins as f32) as usize % bins] += 1;
            }
        }
        let peak = *h.iter().max().unwrap_or(&1) as f64;
        let col = COLOURS[c % COLOURS.len()];
        let pts: Vec<(f64, f64)> = h
            .iter()
            .enumerate()
            .map(|(i, &n)| to_px((i as f64 + 0.5) / bins as f64, n as f64 / peak.max(1.0)))
            .collect();
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], col, 2);
        }
    }
    save(&img, path)
}
