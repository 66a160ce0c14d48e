//! The IR presentation-attack check (issue 15 §3), pure: given the face the
//! decision is about (in the colour frame), the faces found in the IR frame
//! taken closest in time, that IR frame, and the colour→IR geometry, is
//! there a live-looking face where the colour face maps to?
//!
//! What it stops: replays on a phone, tablet or monitor. Screens emit no
//! near-infrared, so under the IR camera's illuminator a screen shows as a
//! dark, flat rectangle (at most a specular glare): no face is found there,
//! or the region is too dark or too flat for skin. It also stops an
//! attacker who shows a screen to the colour camera while their own face is
//! elsewhere in the IR view (the face must be where the geometry maps the
//! colour face, [`IrParams::min_iou`]).
//!
//! What it does not stop: prints whose ink reflects near-infrared
//! (carbon-black laser prints show a face in IR), 3D masks, and a second
//! real person lined up behind a screen. Those need other evidence
//! (a trained anti-spoofing model, depth); docs/LIVENESS.md.
//!
//! The daemon side (which IR frame, running the detector, the policy) is in
//! `crate::daemon::liveness`.

use image::RgbImage;

use super::detect::Face;
use super::track::iou;

/// Where a point of the colour frame is in the IR frame: per axis,
/// `ir = scale · rgb + offset` (the cameras sit side by side, facing the
/// same way; parallax at the working distance is folded into `offset`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub scale: [f32; 2],
    pub offset: [f32; 2],
}

impl Default for Geometry {
    /// The same pixel in both frames (one sensor, or aligned streams).
    fn default() -> Self {
        Geometry {
            scale: [1.0, 1.0],
            offset: [0.0, 0.0],
        }
    }
}

impl Geometry {
    pub fn map_point(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.scale[0] * p[0] + self.offset[0],
            self.scale[1] * p[1] + self.offset[1],
        ]
    }

    /// A box `[x0, y0, x1, y1]` mapped (corners re-ordered if a scale is negative).
    pub fn map_box(&self, b: [f32; 4]) -> [f32; 4] {
        let a = self.map_point([b[0], b[1]]);
        let c = self.map_point([b[2], b[3]]);
        [
            a[0].min(c[0]),
            a[1].min(c[1]),
            a[0].max(c[0]),
            a[1].max(c[1]),
        ]
    }

    /// The least-squares geometry from matching points (colour, IR), each
    /// axis on its own. Needs at least [`MIN_FIT_POINTS`] points spread
    /// over both axes.
    pub fn fit(pairs: &[([f32; 2], [f32; 2])]) -> Result<Fit, FitError> {
        if pairs.len() < MIN_FIT_POINTS {
            return Err(FitError::TooFew(pairs.len()));
        }
        let mut scale = [0.0f32; 2];
        let mut offset = [0.0f32; 2];
        for axis in 0..2 {
            let n = pairs.len() as f64;
            let mx = pairs.iter().map(|p| p.0[axis] as f64).sum::<f64>() / n;
            let my = pairs.iter().map(|p| p.1[axis] as f64).sum::<f64>() / n;
            let (mut sxx, mut sxy) = (0.0f64, 0.0f64);
            for (x, y) in pairs {
                let dx = x[axis] as f64 - mx;
                sxx += dx * dx;
                sxy += dx * (y[axis] as f64 - my);
            }
            // Points (nearly) on one line across this axis: no scale to fit.
            if sxx / n < 1.0 {
                return Err(FitError::Degenerate(if axis == 0 { "x" } else { "y" }));
            }
            let a = sxy / sxx;
            scale[axis] = a as f32;
            offset[axis] = (my - a * mx) as f32;
        }
        let geometry = Geometry { scale, offset };
        let errs: Vec<f32> = pairs
            .iter()
            .map(|(x, y)| {
                let m = geometry.map_point(*x);
                ((m[0] - y[0]).powi(2) + (m[1] - y[1]).powi(2)).sqrt()
            })
            .collect();
        let rms = (errs.iter().map(|e| e * e).sum::<f32>() / errs.len() as f32).sqrt();
        Ok(Fit {
            geometry,
            points: pairs.len(),
            rms_px: rms,
            max_px: errs.iter().copied().fold(0.0, f32::max),
        })
    }
}

/// Fewest matching points [`Geometry::fit`] accepts (two faces' landmarks).
pub const MIN_FIT_POINTS: usize = 10;

/// A fitted geometry and how well it explains its points (IR pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub geometry: Geometry,
    pub points: usize,
    pub rms_px: f32,
    pub max_px: f32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("{0} matching points; at least {MIN_FIT_POINTS} are needed (two frames with one face in both cameras)")]
    TooFew(usize),
    #[error("the points do not spread along {0}: move across the view while calibrating")]
    Degenerate(&'static str),
}

/// The IR frame is searched in a square around where the colour face maps
/// to, this many face sizes wide (geometry error and head movement between
/// the two captures; a face shifted further overlaps too little to pass).
pub const SEARCH_MARGIN: f32 = 2.0;

/// Brightness statistics of the IR face region (luma, 0–255).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrStats {
    /// Mean luma of the region.
    pub mean: f32,
    /// Its standard deviation: skin under an illuminator shows eyes, brows
    /// and nostrils; a screen is flat.
    pub contrast: f32,
}

/// The statistics of the central part of `bbox` (the middle 60 % of its
/// width and height: cheeks, eyes and nose, little background). None when
/// the region lies outside the image.
pub fn region_stats(img: &RgbImage, bbox: [f32; 4]) -> Option<IrStats> {
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    if !(w > 0.0 && h > 0.0) {
        return None;
    }
    let clamp = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi);
    let x0 = clamp(bbox[0] + 0.2 * w, img.width());
    let x1 = clamp(bbox[2] - 0.2 * w, img.width());
    let y0 = clamp(bbox[1] + 0.2 * h, img.height());
    let y1 = clamp(bbox[3] - 0.2 * h, img.height());
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (mut s, mut ss, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for y in y0..y1 {
        for x in x0..x1 {
            let p = img.get_pixel(x, y).0;
            let l = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
            s += l;
            ss += l * l;
            n += 1.0;
        }
    }
    let mean = s / n;
    let var = (ss / n - mean * mean).max(0.0);
    Some(IrStats {
        mean: mean as f32,
        contrast: var.sqrt() as f32,
    })
}

/// The IR check's limits (`[liveness.ir]` in the daemon's config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrParams {
    /// The IR face must overlap the mapped colour face by at least this
    /// much (intersection over union).
    pub min_iou: f32,
    /// Darker than this (mean luma) is not a lit face: a screen.
    pub min_mean: f32,
    /// Flatter than this (luma standard deviation) is not skin.
    pub min_contrast: f32,
}

impl Default for IrParams {
    fn default() -> Self {
        IrParams {
            min_iou: 0.3,
            min_mean: 30.0,
            min_contrast: 8.0,
        }
    }
}

/// What the IR check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IrVerdict {
    /// A face where the colour face maps to, lit and textured like skin.
    Live { iou: f32, stats: IrStats },
    /// No face in the IR frame (the part searched: around where the colour
    /// face maps to).
    NoFace,
    /// Faces in the IR frame, none where the colour face maps to (best overlap).
    Elsewhere { iou: f32 },
    /// A face there, but too dark or too flat for skin.
    ScreenLike { iou: f32, stats: IrStats },
}

impl IrVerdict {
    pub fn passed(&self) -> bool {
        matches!(self, IrVerdict::Live { .. })
    }
}

impl std::fmt::Display for IrVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IrVerdict::Live { iou, stats } => write!(
                f,
                "IR face in place (overlap {iou:.2}), brightness {:.0}, contrast {:.1}",
                stats.mean, stats.contrast
            ),
            IrVerdict::NoFace => write!(
                f,
                "no face in the IR frame where the colour face maps to (a screen shows none; a real face failing here: check [liveness.ir] geometry)"
            ),
            IrVerdict::Elsewhere { iou } => write!(
                f,
                "no IR face where the colour face is (best overlap {iou:.2}); check [liveness.ir] geometry"
            ),
            IrVerdict::ScreenLike { iou, stats } => write!(
                f,
                "IR face region too dark or flat for skin (brightness {:.0}, contrast {:.1}, overlap {iou:.2})",
                stats.mean, stats.contrast
            ),
        }
    }
}

/// Judge one decision's face: `rgb_box` in the colour frame, `ir_faces`
/// found in `ir` (the IR frame closest in time).
pub fn judge(
    rgb_box: [f32; 4],
    ir_faces: &[Face],
    ir: &RgbImage,
    geometry: &Geometry,
    params: &IrParams,
) -> IrVerdict {
    if ir_faces.is_empty() {
        return IrVerdict::NoFace;
    }
    let want = geometry.map_box(rgb_box);
    let Some((face, overlap)) = ir_faces
        .iter()
        .map(|f| (f, iou(&want, &f.bbox)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return IrVerdict::NoFace;
    };
    if overlap < params.min_iou {
        return IrVerdict::Elsewhere { iou: overlap };
    }
    let Some(stats) = region_stats(ir, face.bbox) else {
        return IrVerdict::Elsewhere { iou: overlap };
    };
    if stats.mean < params.min_mean || stats.contrast < params.min_contrast {
        return IrVerdict::ScreenLike {
            iou: overlap,
            stats,
        };
    }
    IrVerdict::Live {
        iou: overlap,
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn face(b: [f32; 4]) -> Face {
        Face {
            bbox: b,
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
        }
    }

    /// A 200×200 frame: mid-grey with a textured square (alternating rows
    /// of 60 and 200) at 50..150.
    fn textured() -> RgbImage {
        RgbImage::from_fn(200, 200, |x, y| {
            if (50..150).contains(&x) && (50..150).contains(&y) {
                let v = if y % 2 == 0 { 60 } else { 200 };
                Rgb([v, v, v])
            } else {
                Rgb([100, 100, 100])
            }
        })
    }

    #[test]
    fn geometry_maps_points_and_boxes() {
        let g = Geometry {
            scale: [0.5, 0.5],
            offset: [10.0, -4.0],
        };
        assert_eq!(g.map_point([100.0, 40.0]), [60.0, 16.0]);
        assert_eq!(g.map_box([0.0, 8.0, 20.0, 28.0]), [10.0, 0.0, 20.0, 10.0]);
        // A mirrored IR stream: the corners come back in order.
        let m = Geometry {
            scale: [-1.0, 1.0],
            offset: [640.0, 0.0],
        };
        assert_eq!(
            m.map_box([100.0, 0.0, 200.0, 50.0]),
            [440.0, 0.0, 540.0, 50.0]
        );
    }

    #[test]
    fn fit_recovers_a_known_geometry_and_reports_its_error() {
        let truth = Geometry {
            scale: [0.625, 0.6],
            offset: [-12.5, 7.0],
        };
        let pts: Vec<[f32; 2]> = (0..12)
            .map(|i| {
                [
                    40.0 + 37.0 * i as f32,
                    300.0 - 19.0 * i as f32 + (i % 3) as f32 * 50.0,
                ]
            })
            .collect();
        let pairs: Vec<_> = pts.iter().map(|p| (*p, truth.map_point(*p))).collect();
        let fit = Geometry::fit(&pairs).unwrap();
        for a in 0..2 {
            assert!(
                (fit.geometry.scale[a] - truth.scale[a]).abs() < 1e-4,
                "{fit:?}"
            );
            assert!(
                (fit.geometry.offset[a] - truth.offset[a]).abs() < 1e-2,
                "{fit:?}"
            );
        }
        assert!(fit.rms_px < 1e-2 && fit.max_px < 1e-2, "{fit:?}");
        assert_eq!(fit.points, 12);
        // One point 5 px off in x: it shows in the error.
        let mut noisy = pairs.clone();
        noisy[3].1[0] += 5.0;
        let fit = Geometry::fit(&noisy).unwrap();
        assert!(
            fit.max_px > 3.0 && fit.rms_px > 1.0 && fit.rms_px < 2.0,
            "{fit:?}"
        );
    }

    #[test]
    fn fit_refuses_too_few_or_collinear_points() {
        let p = |x: f32, y: f32| ([x, y], [x, y]);
        let few: Vec<_> = (0..MIN_FIT_POINTS - 1)
            .map(|i| p(i as f32 * 9.0, i as f32 * 5.0))
            .collect();
        assert_eq!(
            Geometry::fit(&few),
            Err(FitError::TooFew(MIN_FIT_POINTS - 1))
        );
        // Every point at the same height: y cannot be fitted.
        let flat: Vec<_> = (0..12).map(|i| p(i as f32 * 9.0, 50.0)).collect();
        assert_eq!(Geometry::fit(&flat), Err(FitError::Degenerate("y")));
    }

    #[test]
    fn region_stats_measure_the_centre() {
        let img = textured();
        let s = region_stats(&img, [50.0, 50.0, 150.0, 150.0]).unwrap();
        assert!((s.mean - 130.0).abs() < 1.0, "{s:?}");
        assert!((s.contrast - 70.0).abs() < 1.0, "{s:?}");
        let flat = region_stats(&img, [0.0, 0.0, 40.0, 40.0]).unwrap();
        assert_eq!((flat.mean.round(), flat.contrast), (100.0, 0.0));
        assert_eq!(region_stats(&img, [300.0, 300.0, 400.0, 400.0]), None);
        assert_eq!(region_stats(&img, [10.0, 10.0, 10.0, 50.0]), None);
    }

    #[test]
    fn judge_passes_a_lit_textured_face_in_place() {
        let img = textured();
        let g = Geometry::default();
        let p = IrParams::default();
        let v = judge(
            [50.0, 50.0, 150.0, 150.0],
            &[face([52.0, 48.0, 150.0, 152.0])],
            &img,
            &g,
            &p,
        );
        assert!(v.passed(), "{v}");
        assert!(v.to_string().starts_with("IR face in place"), "{v}");
    }

    #[test]
    fn judge_refuses_no_face_a_misplaced_face_and_a_flat_one() {
        let img = textured();
        let g = Geometry::default();
        let p = IrParams::default();
        let rgb = [50.0, 50.0, 150.0, 150.0];
        assert_eq!(judge(rgb, &[], &img, &g, &p), IrVerdict::NoFace);
        // Somebody else's face at the side of the IR view.
        let v = judge(rgb, &[face([150.0, 0.0, 200.0, 50.0])], &img, &g, &p);
        assert!(
            matches!(v, IrVerdict::Elsewhere { iou } if iou == 0.0),
            "{v:?}"
        );
        // The same face, but the geometry says it should be 60 px right.
        let shifted = Geometry {
            offset: [60.0, 0.0],
            ..g
        };
        let v = judge(rgb, &[face(rgb)], &img, &shifted, &p);
        assert!(matches!(v, IrVerdict::Elsewhere { .. }), "{v:?}");
        // A face found in a flat region (what a detector might make of a
        // screen's glare): refused on its statistics.
        let flat = RgbImage::from_pixel(200, 200, Rgb([100, 100, 100]));
        let v = judge(rgb, &[face(rgb)], &flat, &g, &p);
        assert!(matches!(v, IrVerdict::ScreenLike { .. }), "{v:?}");
        let dark = RgbImage::from_fn(200, 200, |_, y| {
            let v = if y % 2 == 0 { 5 } else { 25 };
            Rgb([v, v, v])
        });
        let v = judge(rgb, &[face(rgb)], &dark, &g, &p);
        assert!(matches!(v, IrVerdict::ScreenLike { .. }), "{v:?}");
        assert!(!v.passed());
    }
}
