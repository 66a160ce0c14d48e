//! Periocular crops: the upper face only, for comparing a masked probe with
//! what a mask leaves visible (issue 14 §2 method (d), the approach of
//! "Face ID with a mask").
//!
//! Every pixel of the aligned crop from a horizontal line below the eyes
//! down is set to mid-grey (128, which the embedders' normalisation maps to
//! ~0). The line sits `cut` inter-ocular distances below the eye line of the
//! manifest's alignment template, so the rule works for any crop size. A
//! mask's upper edge sits 0.18–0.31 IOD below the eyes (the procedural
//! renderer's outline, [`crate::face::mask`]; MaskTheFace's templates and
//! real masks alike cover the nose bridge), the nose tip ~0.57 IOD: with the
//! default [`DEFAULT_CUT`] neither the enrolment's bare face nor the probe's
//! mask shows below the line, so both sides see the same region.

use image::{Rgb, RgbImage};

use crate::bundle::AlignSection;

/// Default cut, in inter-ocular distances below the eye line.
pub const DEFAULT_CUT: f32 = 0.25;

/// Grey value painted below the cut.
pub const GREY: u8 = 128;

/// First crop row that is greyed for `cut` under `cfg`'s template
/// (clamped to the crop).
pub fn cut_row(cfg: &AlignSection, cut: f32) -> u32 {
    let t = &cfg.template;
    let iod = ((t[1][0] - t[0][0]).powi(2) + (t[1][1] - t[0][1]).powi(2)).sqrt();
    let eye_y = (t[0][1] + t[1][1]) / 2.0;
    let y = (eye_y + cut * iod).round();
    if y.is_finite() && y > 0.0 {
        (y as u32).min(cfg.size)
    } else {
        0
    }
}

/// Grey `crop` from [`cut_row`] down, in place.
pub fn grey_below(crop: &mut RgbImage, cfg: &AlignSection, cut: f32) {
    let y0 = cut_row(cfg, cut).min(crop.height());
    for y in y0..crop.height() {
        for x in 0..crop.width() {
            crop.put_pixel(x, y, Rgb([GREY; 3]));
        }
    }
}

/// A greyed copy of `crop`.
pub fn periocular(crop: &RgbImage, cfg: &AlignSection, cut: f32) -> RgbImage {
    let mut c = crop.clone();
    grey_below(&mut c, cfg, cut);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mfn() -> AlignSection {
        // insightface's 112 template
        AlignSection {
            size: 112,
            template: [
                [38.2946, 51.6963],
                [73.5318, 51.5014],
                [56.0252, 71.7366],
                [41.5493, 92.3655],
                [70.7299, 92.2041],
            ],
            border: "constant".into(),
        }
    }

    #[test]
    fn cut_lies_between_the_eyes_and_the_nose_tip() {
        let c = mfn();
        let r = cut_row(&c, DEFAULT_CUT);
        assert!(r > 52 && r < 71, "{r}");
        assert_eq!(cut_row(&c, 0.0), 52);
        assert_eq!(cut_row(&c, 100.0), 112);
    }

    #[test]
    fn greys_exactly_the_rows_below_the_cut() {
        let c = mfn();
        let crop = RgbImage::from_pixel(112, 112, Rgb([10, 200, 30]));
        let g = periocular(&crop, &c, DEFAULT_CUT);
        let r = cut_row(&c, DEFAULT_CUT);
        for y in 0..112 {
            let want = if y < r {
                Rgb([10, 200, 30])
            } else {
                Rgb([GREY; 3])
            };
            assert_eq!(*g.get_pixel(0, y), want, "row {y}");
            assert_eq!(*g.get_pixel(111, y), want, "row {y}");
        }
        // the source is untouched
        assert_eq!(*crop.get_pixel(5, 111), Rgb([10, 200, 30]));
    }
}
