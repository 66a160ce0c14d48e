//! Five-point face alignment: a least-squares similarity (rotation, uniform
//! scale, translation; no reflection) from the detector's landmarks to the
//! embedder's template (the `[align]` section of its manifest), then a
//! bilinear warp to the crop size.
//!
//! This is `models/facegate_models/align.py` in Rust, to the grey level:
//! continuous pixel coordinates (pixel (j, i) covers [j, j+1) x [i, i+1), its
//! centre is at (j + 0.5, i + 0.5)), samples outside the image clamp to the
//! nearest edge pixel, and the result is rounded half to even like `np.rint`.

use image::{Rgb, RgbImage};

use crate::bundle::AlignSection;

#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("the landmarks are degenerate (all at one point or not finite)")]
    Degenerate,
    #[error("cannot align an empty image")]
    EmptyImage,
    #[error("border mode {0:?} is not supported (clamp)")]
    Border(String),
}

/// 2x3 affine matrix: dst = [[a, b, c], [d, e, f]] * [x, y, 1].
pub type Affine = [[f64; 3]; 2];

/// Least-squares 4-DoF similarity mapping `src` onto `dst` (same as
/// align.py's `similarity`, solved in closed form).
pub fn similarity(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Result<Affine, AlignError> {
    let n = src.len().min(dst.len());
    if n < 2 {
        return Err(AlignError::Degenerate);
    }
    let nf = n as f64;
    let (mut sx, mut sy, mut dx, mut dy) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        sx += src[i][0] as f64;
        sy += src[i][1] as f64;
        dx += dst[i][0] as f64;
        dy += dst[i][1] as f64;
    }
    let (sx, sy, dx, dy) = (sx / nf, sy / nf, dx / nf, dy / nf);
    let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (px, py) = (src[i][0] as f64 - sx, src[i][1] as f64 - sy);
        let (qx, qy) = (dst[i][0] as f64 - dx, dst[i][1] as f64 - dy);
        num_a += px * qx + py * qy;
        num_b += px * qy - py * qx;
        den += px * px + py * py;
    }
    if den.is_nan() || den <= 1e-12 || !num_a.is_finite() || !num_b.is_finite() {
        return Err(AlignError::Degenerate);
    }
    let (a, b) = (num_a / den, num_b / den);
    let tx = dx - (a * sx - b * sy);
    let ty = dy - (b * sx + a * sy);
    Ok([[a, -b, tx], [b, a, ty]])
}

/// Inverse of a similarity/affine matrix.
pub fn invert(m: &Affine) -> Result<Affine, AlignError> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if det.abs() < 1e-12 || !det.is_finite() {
        return Err(AlignError::Degenerate);
    }
    let (a, b, c) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det);
    let d = m[0][0] / det;
    Ok([
        [a, b, -(a * m[0][2] + b * m[1][2])],
        [c, d, -(c * m[0][2] + d * m[1][2])],
    ])
}

/// Apply an affine matrix to a point.
pub fn apply(m: &Affine, p: [f32; 2]) -> [f32; 2] {
    let (x, y) = (p[0] as f64, p[1] as f64);
    [
        (m[0][0] * x + m[0][1] * y + m[0][2]) as f32,
        (m[1][0] * x + m[1][1] * y + m[1][2]) as f32,
    ]
}

/// Bilinear sample at continuous pixel-index coordinates (x, y) (pixel
/// centres at integers here), clamping to the edge; f64 per channel.
#[inline]
pub fn sample(img: &RgbImage, x: f64, y: f64) -> [f64; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let px = |yy: i64, xx: i64| -> &Rgb<u8> {
        img.get_pixel(xx.clamp(0, w - 1) as u32, yy.clamp(0, h - 1) as u32)
    };
    let (p00, p01, p10, p11) = (
        px(y0, x0),
        px(y0, x0 + 1),
        px(y0 + 1, x0),
        px(y0 + 1, x0 + 1),
    );
    let mut out = [0.0; 3];
    for c in 0..3 {
        let top = p00[c] as f64 * (1.0 - fx) + p01[c] as f64 * fx;
        let bot = p10[c] as f64 * (1.0 - fx) + p11[c] as f64 * fx;
        out[c] = top * (1.0 - fy) + bot * fy;
    }
    out
}

/// Warp `img` by `m` (source -> crop) into a `size` x `size` crop.
pub fn warp(img: &RgbImage, m: &Affine, size: u32) -> Result<RgbImage, AlignError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(AlignError::EmptyImage);
    }
    let inv = invert(m)?;
    let mut out = RgbImage::new(size, size);
    for (j, i, px) in out.enumerate_pixels_mut() {
        let (u, v) = (j as f64 + 0.5, i as f64 + 0.5);
        let x = inv[0][0] * u + inv[0][1] * v + inv[0][2] - 0.5;
        let y = inv[1][0] * u + inv[1][1] * v + inv[1][2] - 0.5;
        let s = sample(img, x, y);
        for c in 0..3 {
            px[c] = s[c].round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

/// Align a face: landmarks (left eye, right eye, nose, left and right mouth
/// corners) to the template in `cfg`, warped to `cfg.size`.
pub fn align(
    img: &RgbImage,
    landmarks: &[[f32; 2]; 5],
    cfg: &AlignSection,
) -> Result<RgbImage, AlignError> {
    if cfg.border != "clamp" {
        return Err(AlignError::Border(cfg.border.clone()));
    }
    let m = similarity(landmarks, &cfg.template)?;
    warp(img, &m, cfg.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_transform() {
        let src = [
            [10.0, 20.0],
            [50.0, 22.0],
            [30.0, 40.0],
            [15.0, 60.0],
            [45.0, 61.0],
        ];
        let (s, t) = (1.7f64, 0.3f64);
        let truth: Affine = [
            [s * t.cos(), -s * t.sin(), 5.0],
            [s * t.sin(), s * t.cos(), -3.0],
        ];
        let dst: Vec<[f32; 2]> = src.iter().map(|p| apply(&truth, *p)).collect();
        let m = similarity(&src, &dst).unwrap();
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - truth[r][c]).abs() < 1e-4, "{m:?}");
            }
        }
        let inv = invert(&m).unwrap();
        let back = apply(&inv, dst[2]);
        assert!((back[0] - 30.0).abs() < 1e-3 && (back[1] - 40.0).abs() < 1e-3);
    }

    #[test]
    fn degenerate_landmarks_are_refused() {
        let p = [[5.0, 5.0]; 5];
        assert!(similarity(&p, &p).is_err());
        let nan = [[f32::NAN, 1.0], [2.0, 3.0]];
        assert!(similarity(&nan, &nan).is_err());
    }

    #[test]
    fn identity_warp_is_exact_and_edges_clamp() {
        let img = RgbImage::from_fn(4, 4, |x, y| Rgb([(x * 60) as u8, (y * 60) as u8, 7]));
        let id: Affine = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(warp(&img, &id, 4).unwrap(), img);
        // Shift by +2: the crop's left columns read beyond the left edge.
        let shift: Affine = [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]];
        let out = warp(&img, &shift, 4).unwrap();
        assert_eq!(out.get_pixel(0, 0)[0], 0);
        assert_eq!(out.get_pixel(3, 0)[0], 60);
        // Half-pixel shift averages neighbours, rounding half to even.
        let half: Affine = [[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]];
        let out = warp(&img, &half, 4).unwrap();
        assert_eq!(out.get_pixel(0, 0)[0], 30);
    }
}
