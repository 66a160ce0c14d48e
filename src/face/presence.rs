//! Does an aligned face wear a mask?
//!
//! A deliberately simple, explainable rule on the aligned crop: take the skin
//! colour between the eyes (above any mask's nose wire) as the person's skin
//! reference, then count how much of the lower face (around the nose tip,
//! mouth and chin) still looks like that skin: same chromaticity (r, g share
//! of r + g + b, within [`SKIN_CHROMA`]) and a plausible brightness (between
//! [`DARKER`] and [`BRIGHTER`] times the reference). A mask replaces the
//! lower face with fabric of another colour or brightness, so the skin share
//! drops. `masked = skin share < threshold`.
//!
//! The regions come from the embedder's alignment template, so the rule
//! works for any template/crop size.
//!
//! When the embedder's manifest carries a trained classifier (`[presence]`,
//! issue 14 §6, [`Classifier`]) that decides instead, on the whole-face
//! embedding; the skin share is still measured and reported.

use image::RgbImage;

use crate::bundle::AlignSection;

/// Largest chromaticity distance from the reference that counts as skin.
pub const SKIN_CHROMA: f32 = 0.035;
/// Brightness range (relative to the reference) that counts as skin.
pub const DARKER: f32 = 0.55;
pub const BRIGHTER: f32 = 1.45;
/// Default decision threshold on the skin share of the lower face.
pub const DEFAULT_THRESHOLD: f32 = 0.35;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Presence {
    /// Share of the lower-face pixels that look like the reference skin, 0..1.
    pub skin_share: f32,
    pub masked: bool,
}

fn chroma(p: &image::Rgb<u8>) -> (f32, f32, f32) {
    let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
    let s = (r + g + b).max(1.0);
    (r / s, g / s, (r + g + b) / 3.0)
}

fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Pixels of `crop` in the rectangle [x0, x1) x [y0, y1) (clipped).
fn region(crop: &RgbImage, x0: f32, y0: f32, x1: f32, y1: f32) -> Vec<(f32, f32, f32)> {
    let (w, h) = (crop.width() as f32, crop.height() as f32);
    let (x0, x1) = (x0.clamp(0.0, w) as u32, x1.clamp(0.0, w) as u32);
    let (y0, y1) = (y0.clamp(0.0, h) as u32, y1.clamp(0.0, h) as u32);
    let mut out = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            out.push(chroma(crop.get_pixel(x, y)));
        }
    }
    out
}

/// The skin share of the lower face of an aligned crop.
pub fn skin_share(crop: &RgbImage, cfg: &AlignSection) -> f32 {
    let t = &cfg.template;
    let iod = ((t[1][0] - t[0][0]).powi(2) + (t[1][1] - t[0][1]).powi(2)).sqrt();
    let eye_y = (t[0][1] + t[1][1]) / 2.0;
    // Reference: between the eyes, from the brow line to the upper nose bridge.
    let mut reference = region(
        crop,
        t[0][0] + 0.25 * iod,
        eye_y - 0.15 * iod,
        t[1][0] - 0.25 * iod,
        eye_y + 0.2 * iod,
    );
    // Lower face: from just above the nose tip to below the lower lip, mouth
    // corner to mouth corner (plus a margin).
    let mouth_y = (t[3][1] + t[4][1]) / 2.0;
    let lower = region(
        crop,
        t[3][0] - 0.1 * iod,
        t[2][1] - 0.1 * iod,
        t[4][0] + 0.1 * iod,
        mouth_y + 0.45 * iod,
    );
    if reference.is_empty() || lower.is_empty() {
        return 0.0;
    }
    let mut rs: Vec<f32> = reference.iter().map(|p| p.0).collect();
    let mut gs: Vec<f32> = reference.iter().map(|p| p.1).collect();
    let mut ls: Vec<f32> = reference.iter_mut().map(|p| p.2).collect();
    let (r0, g0, l0) = (median(&mut rs), median(&mut gs), median(&mut ls).max(1.0));
    let skin = lower
        .iter()
        .filter(|(r, g, l)| {
            let d = ((r - r0).powi(2) + (g - g0).powi(2)).sqrt();
            let rel = l / l0;
            d <= SKIN_CHROMA && (DARKER..=BRIGHTER).contains(&rel)
        })
        .count();
    skin as f32 / lower.len() as f32
}

/// Decide with `threshold` (see [`DEFAULT_THRESHOLD`]).
pub fn presence(crop: &RgbImage, cfg: &AlignSection, threshold: f32) -> Presence {
    let s = skin_share(crop, cfg);
    Presence {
        skin_share: s,
        masked: s < threshold,
    }
}

/// The mask presence classifier of an embedder bundle: logistic regression
/// on the unit-norm whole-face embedding (see
/// [`crate::bundle::presence::PresenceSection`], validated with the
/// manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    weights: Vec<f32>,
    bias: f32,
    /// Masked when the probability is at least this.
    pub threshold: f32,
}

impl Classifier {
    pub fn from_section(s: &crate::bundle::presence::PresenceSection) -> Classifier {
        Classifier {
            weights: s.weights.clone(),
            bias: s.bias,
            threshold: s.threshold,
        }
    }

    /// The classifier of a manifest, if it has one.
    pub fn from_manifest(m: &crate::bundle::Manifest) -> Option<Classifier> {
        m.presence.as_ref().map(Classifier::from_section)
    }

    pub fn dim(&self) -> usize {
        self.weights.len()
    }

    /// Probability that the face of embedding `e` wears a mask (0 when the
    /// dimension does not match: never masked by a wrong input).
    pub fn probability(&self, e: &[f32]) -> f32 {
        if e.len() != self.weights.len() {
            return 0.0;
        }
        let z: f32 = self.weights.iter().zip(e).map(|(w, x)| w * x).sum::<f32>() + self.bias;
        1.0 / (1.0 + (-z).exp())
    }

    /// Probability and decision, at `threshold` when given (a configured
    /// override), else the manifest's.
    pub fn decide(&self, e: &[f32], threshold: Option<f32>) -> (f32, bool) {
        let p = self.probability(e);
        (p, p >= threshold.unwrap_or(self.threshold))
    }
}

/// How a probe's mask presence is decided, per call (from the daemon's
/// reloadable config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Skin-share threshold (the rule used without a classifier).
    pub skin_threshold: f32,
    /// Override of the classifier's threshold (None: the manifest's).
    pub classifier_threshold: Option<f32>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            skin_threshold: DEFAULT_THRESHOLD,
            classifier_threshold: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AlignSection {
        AlignSection {
            size: 160,
            template: [
                [60.5, 75.3],
                [99.3, 75.1],
                [80.0, 97.3],
                [64.1, 120.0],
                [96.2, 119.8],
            ],
            border: "clamp".into(),
        }
    }

    #[test]
    fn the_classifier_is_a_thresholded_logistic_on_the_embedding() {
        let s = crate::bundle::presence::PresenceSection {
            kind: "logistic-embedding".into(),
            model_sha256: String::new(),
            weights: vec![4.0, -4.0],
            bias: 0.0,
            threshold: 0.9,
            data: None,
            holdout_bare_masked: None,
            holdout_masked_masked: None,
        };
        let c = Classifier::from_section(&s);
        assert_eq!(c.dim(), 2);
        // z = 4: p = 0.982 (masked); z = 0: p = 0.5; z = -4: p = 0.018.
        let (p, m) = c.decide(&[1.0, 0.0], None);
        assert!((p - 0.98201).abs() < 1e-4 && m, "{p}");
        let (p, m) = c.decide(&[0.5, 0.5], None);
        assert!((p - 0.5).abs() < 1e-6 && !m, "{p}");
        assert!(!c.decide(&[0.0, 1.0], None).1);
        // A configured threshold overrides the manifest's.
        assert!(c.decide(&[0.5, 0.5], Some(0.5)).1);
        assert!(!c.decide(&[1.0, 0.0], Some(0.99)).1);
        // A wrong dimension is never called masked.
        assert_eq!(c.decide(&[1.0, 0.0, 0.0], None), (0.0, false));
    }

    #[test]
    fn plain_skin_is_unmasked_and_a_blue_lower_face_is_masked() {
        let skin = image::Rgb([200, 150, 120]);
        let face = RgbImage::from_pixel(160, 160, skin);
        let p = presence(&face, &cfg(), DEFAULT_THRESHOLD);
        assert!(!p.masked && p.skin_share > 0.99, "{p:?}");
        let mut masked = face.clone();
        for y in 90..160 {
            for x in 0..160 {
                masked.put_pixel(x, y, image::Rgb([110, 165, 210]));
            }
        }
        let p = presence(&masked, &cfg(), DEFAULT_THRESHOLD);
        assert!(p.masked && p.skin_share < 0.01, "{p:?}");
        // A shadowed but bare lower face is still skin.
        let mut shadow = face.clone();
        for y in 90..160 {
            for x in 0..160 {
                shadow.put_pixel(x, y, image::Rgb([140, 105, 84]));
            }
        }
        assert!(!presence(&shadow, &cfg(), DEFAULT_THRESHOLD).masked);
    }
}
