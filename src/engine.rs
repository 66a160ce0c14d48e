//! The decision pipeline: frame → detect → pick the face → align → mask
//! presence → embed, then scan and decide (see docs/ARCHITECTURE.md).
//!
//! [`Engine`] runs the models on one frame and times every stage;
//! [`Fusion`] turns per-frame scores into one decision (k of n frames above
//! the threshold of the probe's condition); [`Lockout`] backs off after
//! repeated failures; [`quality`] checks enrolment captures.

use std::time::Instant;

use image::RgbImage;

use crate::bundle::AlignSection;
use crate::face::detect::{Detector, Face};
use crate::face::embed::Embedder;
use crate::face::mask::MaskStyle;
use crate::face::track::{Step, Tracker};
use crate::gallery::{Condition, NewTemplate, Space};
use crate::protocol::Stages;

mod decide;
pub use decide::{Fused, Fusion, Lockout};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Detect(#[from] crate::face::detect::DetectError),
    #[error(transparent)]
    Align(#[from] crate::face::align::AlignError),
    #[error(transparent)]
    Embed(#[from] crate::face::embed::EmbedError),
    #[error(transparent)]
    Mask(#[from] crate::face::mask::MaskError),
}

/// The face picked in a frame, analysed.
#[derive(Debug, Clone)]
pub struct FaceAnalysis {
    pub face: Face,
    /// Number of faces of usable size in the frame.
    pub faces: usize,
    pub masked: bool,
    pub skin_share: f32,
    /// The presence classifier's probability that the face is masked (None:
    /// the embedder has no classifier, the skin share decided).
    pub mask_probability: Option<f32>,
    /// Unit-norm embedding (never logged).
    pub embedding: Vec<f32>,
    /// The embedding is of the periocular crop (a masked probe, when the
    /// embedder is calibrated for it): compare it with periocular templates.
    pub periocular: bool,
    /// The aligned crop (whole face).
    pub crop: RgbImage,
}

impl FaceAnalysis {
    /// The gallery matrix this probe is compared with.
    pub fn space(&self) -> Space {
        if self.periocular {
            Space::Periocular
        } else {
            Space::Face
        }
    }
}

/// One analysed frame.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub face: Option<FaceAnalysis>,
    pub stages: Stages,
    /// The sha256 of the embedder that made `face.embedding` (set by the
    /// daemon; empty elsewhere): a frame analysed by the engine in use
    /// before a model switch is never compared with the new gallery.
    pub embedder_sha: String,
    /// The frame analysed, with its capture time (set by the daemon's
    /// analyzer: the IR check pairs it with an IR frame, the RGB
    /// anti-spoofing check crops the face from it). None elsewhere.
    pub frame: Option<std::sync::Arc<crate::source::Frame>>,
}

impl Analysis {
    /// When the frame was captured, if the daemon's analyzer said.
    pub fn captured(&self) -> Option<Instant> {
        self.frame.as_ref().map(|f| f.captured)
    }
}

/// Operating thresholds (cosine) per probe condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub unmasked: f32,
    /// A masked probe's whole face against whole-face templates.
    pub masked: f32,
    /// A masked probe's periocular crop against periocular templates (None:
    /// the embedder is not calibrated for it, masked probes use `masked`).
    pub periocular: Option<f32>,
}

impl Thresholds {
    pub fn for_probe(&self, masked: bool) -> f32 {
        if masked {
            self.masked
        } else {
            self.unmasked
        }
    }

    /// The threshold for this probe's embedding: periocular, masked or
    /// unmasked. A periocular embedding without a periocular threshold never
    /// passes.
    pub fn for_face(&self, f: &FaceAnalysis) -> f32 {
        if f.periocular {
            self.periocular.unwrap_or(f32::INFINITY)
        } else {
            self.for_probe(f.masked)
        }
    }
}

/// Periocular comparison of masked probes (issue 14 §2 (d)): from the
/// embedder manifest's calibrated `[thresholds] periocular` and
/// `periocular_cut`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriocularMode {
    /// Grey from this many inter-ocular distances below the eyes.
    pub cut: f32,
    /// Calibrated cosine threshold, periocular probe vs periocular template.
    pub threshold: f32,
}

impl PeriocularMode {
    /// The mode a manifest's calibrated thresholds ask for, if any.
    pub fn from_thresholds(t: Option<&crate::bundle::Thresholds>) -> Option<PeriocularMode> {
        let t = t.filter(|t| t.status == "calibrated")?;
        match (t.periocular, t.periocular_cut) {
            (Some(threshold), Some(cut))
                if threshold.is_finite() && cut.is_finite() && (0.0..=4.0).contains(&cut) =>
            {
                Some(PeriocularMode { cut, threshold })
            }
            _ => None,
        }
    }
}

/// Mask presence probability at or above which a tracked face keeps its
/// "masked" call for the rest of its track (the classifier is not run again
/// until the next whole-frame search). A face that takes its mask off in
/// between is compared by its periocular crop, which greys the lower face
/// either way: the same threshold and false accepts, a higher chance of a
/// refusal for at most `track_every` frames.
pub const KNOWN_MASKED: f32 = 0.9;

/// Models and alignment settings.
pub struct Engine {
    pub detector: Box<dyn Detector>,
    pub embedder: Box<dyn Embedder>,
    /// The bundle's `[periocular_model]`: periocular crops go through it
    /// (None: through `embedder`).
    pub periocular_embedder: Option<Box<dyn Embedder>>,
    pub align: AlignSection,
    /// Masked probes are embedded as periocular crops, and enrolment stores
    /// a periocular template per capture (None: whole faces only).
    pub periocular: Option<PeriocularMode>,
    /// The embedder manifest's mask presence classifier (None: the
    /// skin-share rule decides).
    pub presence: Option<crate::face::presence::Classifier>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The face to use: large and central (area weighted by closeness to the
/// frame centre), at least `min_px` wide.
pub fn pick(faces: &[Face], w: u32, h: u32, min_px: u32) -> Option<&Face> {
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let diag = (cx * cx + cy * cy).sqrt().max(1.0);
    faces
        .iter()
        .filter(|f| f.width() >= min_px as f32)
        .max_by(|a, b| {
            let s = |f: &Face| {
                let fx = (f.bbox[0] + f.bbox[2]) / 2.0 - cx;
                let fy = (f.bbox[1] + f.bbox[3]) / 2.0 - cy;
                f.area() * (1.0 - 0.5 * (fx * fx + fy * fy).sqrt() / diag)
            };
            s(a).total_cmp(&s(b))
        })
}

impl Engine {
    /// The network for periocular crops: the bundle's periocular model when
    /// it has one, else the whole-face embedder.
    pub fn periocular_embedder(&self) -> &dyn Embedder {
        self.periocular_embedder
            .as_deref()
            .unwrap_or(self.embedder.as_ref())
    }

    /// Detect, pick, align, presence, embed.
    ///
    /// With a presence classifier the whole face is embedded first and the
    /// classifier decides on that embedding; a masked probe is then embedded
    /// again as a periocular crop when the engine compares masked probes so
    /// (two embedder runs, counted in [`Stages::embeddings`]). Without one
    /// the skin share decides before the single embedding.
    pub fn analyze(
        &self,
        img: &RgbImage,
        min_face_px: u32,
        presence: crate::face::presence::Params,
    ) -> Result<Analysis, EngineError> {
        self.analyze_frame(img, None, min_face_px, presence)
    }

    /// [`Engine::analyze`] for the next frame of a video stream: with a
    /// tracker the faces of the last frames are looked for in small regions
    /// around them ([`crate::face::track`]); None searches the whole frame.
    pub fn analyze_frame(
        &self,
        img: &RgbImage,
        tracker: Option<&Tracker>,
        min_face_px: u32,
        presence: crate::face::presence::Params,
    ) -> Result<Analysis, EngineError> {
        let mut st = Stages::default();
        let t = Instant::now();
        let faces = match tracker {
            Some(tr) => {
                let (faces, step) = tr.detect(self.detector.as_ref(), img, t)?;
                if matches!(step, Step::Tracked(_)) {
                    st.tracked = 1;
                }
                faces
            }
            None => self.detector.detect(img)?,
        };
        st.detect_ms = ms(t);
        let usable = faces
            .iter()
            .filter(|f| f.width() >= min_face_px as f32)
            .count();
        let Some(face) = pick(&faces, img.width(), img.height(), min_face_px) else {
            return Ok(Analysis {
                face: None,
                stages: st,
                embedder_sha: String::new(),
                frame: None,
            });
        };
        let t = Instant::now();
        let crop = crate::face::align::align(img, &face.landmarks, &self.align)?;
        st.align_ms = ms(t);
        let t = Instant::now();
        let skin_share = crate::face::presence::skin_share(&crop, &self.align);
        st.presence_ms = ms(t);
        // A tracked face the classifier called clearly masked on an earlier
        // frame of its track (since the last whole-frame search) is taken
        // as still masked: its whole-face embedding would only feed the
        // classifier, so one embedding (the periocular crop) instead of two.
        let known_masked = match (tracker, &self.presence, self.periocular) {
            (Some(tr), Some(c), Some(_)) => {
                let at_least =
                    KNOWN_MASKED.max(presence.classifier_threshold.unwrap_or(c.threshold));
                tr.mask_probability(face).filter(|p| *p >= at_least)
            }
            _ => None,
        };
        let (whole, masked, mask_probability) = match &self.presence {
            Some(_) if known_masked.is_some() => (None, true, known_masked),
            Some(c) => {
                let t = Instant::now();
                let e = self.embedder.embed(&crop)?.into_vec();
                st.embed_ms += ms(t);
                st.embeddings += 1;
                let t = Instant::now();
                let (p, masked) = c.decide(&e, presence.classifier_threshold);
                st.presence_ms += ms(t);
                if let Some(tr) = tracker {
                    tr.note_mask_probability(face, p);
                }
                (Some(e), masked, Some(p))
            }
            None => (None, skin_share < presence.skin_threshold, None),
        };
        let periocular = match self.periocular {
            Some(pm) if masked => Some(crate::face::periocular::periocular(
                &crop,
                &self.align,
                pm.cut,
            )),
            _ => None,
        };
        let embedding = match (whole, &periocular) {
            (Some(e), None) => e,
            (_, p) => {
                let t = Instant::now();
                let e = match p {
                    Some(p) => self.periocular_embedder().embed(p)?,
                    None => self.embedder.embed(&crop)?,
                }
                .into_vec();
                st.embed_ms += ms(t);
                st.embeddings += 1;
                e
            }
        };
        Ok(Analysis {
            face: Some(FaceAnalysis {
                face: face.clone(),
                faces: usable,
                masked,
                skin_share,
                mask_probability,
                embedding,
                periocular: periocular.is_some(),
                crop,
            }),
            stages: st,
            embedder_sha: String::new(),
            frame: None,
        })
    }

    /// Embed `img` with a synthetic mask of `style` painted on `face`.
    pub fn embed_masked(
        &self,
        img: &RgbImage,
        face: &Face,
        style: &MaskStyle,
        seed: u64,
    ) -> Result<Vec<f32>, EngineError> {
        let mut m = img.clone();
        crate::face::mask::paint(&mut m, face, style, seed)?;
        let crop = crate::face::align::align(&m, &face.landmarks, &self.align)?;
        Ok(self.embedder.embed(&crop)?.into_vec())
    }
}

/// Enrolment quality limits.
#[derive(Debug, Clone)]
pub struct QualityLimits {
    pub min_face_px: u32,
    pub min_sharpness: f32,
    pub max_yaw: f32,
}

/// Variance of the 4-neighbour Laplacian of the grey image (blur measure).
pub fn sharpness(crop: &RgbImage) -> f32 {
    let (w, h) = crop.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let g = |x: u32, y: u32| {
        let p = crop.get_pixel(x, y);
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    };
    let mut vals = Vec::with_capacity(((w - 2) * (h - 2)) as usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            vals.push(g(x - 1, y) + g(x + 1, y) + g(x, y - 1) + g(x, y + 1) - 4.0 * g(x, y));
        }
    }
    let n = vals.len() as f32;
    let mean = vals.iter().sum::<f32>() / n;
    vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n
}

/// Head turn from the landmarks: horizontal offset of the nose from the eyes'
/// midpoint, over half the eye distance (0 frontal, about 1 in profile).
pub fn yaw(face: &Face) -> f32 {
    let [le, re, nose, _, _] = face.landmarks;
    let iod = ((re[0] - le[0]).powi(2) + (re[1] - le[1]).powi(2)).sqrt();
    if iod <= f32::EPSILON {
        return 1.0;
    }
    ((nose[0] - (le[0] + re[0]) / 2.0).abs() / (iod / 2.0)).min(1.0)
}

/// Why an enrolment capture is refused, if it is.
pub fn quality(a: &FaceAnalysis, lim: &QualityLimits) -> Result<(), String> {
    if a.faces != 1 {
        return Err(format!("{} faces (need exactly one)", a.faces));
    }
    if a.face.width() < lim.min_face_px as f32 {
        return Err(format!(
            "face {:.0} px wide (need {} px)",
            a.face.width(),
            lim.min_face_px
        ));
    }
    let s = sharpness(&a.crop);
    if s < lim.min_sharpness {
        return Err(format!(
            "too blurry (sharpness {s:.0}, need {:.0})",
            lim.min_sharpness
        ));
    }
    let y = yaw(&a.face);
    if y > lim.max_yaw {
        return Err(format!(
            "head turned (yaw {y:.2}, at most {:.2})",
            lim.max_yaw
        ));
    }
    if a.masked {
        return Err("face is masked (enrol unmasked; masks are synthesised)".into());
    }
    Ok(())
}

/// Templates for one accepted capture: the unmasked one, one per mask style,
/// and the periocular one when the engine compares masked probes that way.
pub fn templates_for(
    engine: &Engine,
    user: &str,
    source: &str,
    img: &RgbImage,
    a: &FaceAnalysis,
    styles: &[MaskStyle],
    seed: u64,
) -> Result<Vec<NewTemplate>, EngineError> {
    let mut out = vec![NewTemplate {
        user: user.to_string(),
        embedding: a.embedding.clone(),
        condition: Condition::Unmasked,
        source: source.to_string(),
        quality: a.face.score,
    }];
    if let Some(pm) = engine.periocular {
        let crop = crate::face::periocular::periocular(&a.crop, &engine.align, pm.cut);
        out.push(NewTemplate {
            user: user.to_string(),
            embedding: engine.periocular_embedder().embed(&crop)?.into_vec(),
            condition: Condition::Periocular,
            source: format!("{source} +periocular"),
            quality: a.face.score,
        });
    }
    for (i, style) in styles.iter().enumerate() {
        let e = engine.embed_masked(img, &a.face, style, seed.wrapping_add(i as u64))?;
        out.push(NewTemplate {
            user: user.to_string(),
            embedding: e,
            condition: Condition::SyntheticMasked,
            source: format!("{source} +synthetic"),
            quality: a.face.score,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(b: [f32; 4]) -> Face {
        let (cx, cy, w) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, b[2] - b[0]);
        Face {
            bbox: b,
            score: 0.9,
            landmarks: [
                [cx - w / 5.0, cy - w / 8.0],
                [cx + w / 5.0, cy - w / 8.0],
                [cx, cy],
                [cx - w / 6.0, cy + w / 5.0],
                [cx + w / 6.0, cy + w / 5.0],
            ],
        }
    }

    #[test]
    fn picks_the_large_central_face() {
        let small = face([0.0, 0.0, 30.0, 30.0]);
        let corner = face([0.0, 0.0, 100.0, 100.0]);
        let centre = face([260.0, 180.0, 355.0, 275.0]);
        let faces = [small.clone(), corner, centre.clone()];
        assert_eq!(pick(&faces, 640, 480, 40), Some(&centre));
        assert_eq!(pick(&[small], 640, 480, 40), None);
        assert!(yaw(&centre) < 0.01);
    }

    fn manifest_thresholds(
        status: &str,
        p: Option<f32>,
        cut: Option<f32>,
    ) -> crate::bundle::Thresholds {
        crate::bundle::Thresholds {
            identify_far: None,
            identify_unmasked: None,
            identify_masked: None,
            identify_periocular: None,
            status: status.into(),
            unmasked: Some(0.5),
            masked: Some(0.45),
            periocular: p,
            periocular_cut: cut,
            note: None,
        }
    }

    #[test]
    fn periocular_mode_needs_a_calibrated_threshold_and_cut() {
        let ok = manifest_thresholds("calibrated", Some(0.64), Some(0.5));
        assert_eq!(
            PeriocularMode::from_thresholds(Some(&ok)),
            Some(PeriocularMode {
                cut: 0.5,
                threshold: 0.64
            })
        );
        for t in [
            manifest_thresholds("uncalibrated", Some(0.64), Some(0.5)),
            manifest_thresholds("calibrated", None, Some(0.5)),
            manifest_thresholds("calibrated", Some(0.64), None),
            manifest_thresholds("calibrated", Some(0.64), Some(f32::NAN)),
            manifest_thresholds("calibrated", Some(0.64), Some(-1.0)),
        ] {
            assert_eq!(PeriocularMode::from_thresholds(Some(&t)), None, "{t:?}");
        }
        assert_eq!(PeriocularMode::from_thresholds(None), None);
    }

    #[test]
    fn each_probe_meets_its_own_threshold_and_matrix() {
        let f = |masked, periocular| FaceAnalysis {
            face: face([0.0, 0.0, 100.0, 100.0]),
            faces: 1,
            masked,
            skin_share: 0.0,
            mask_probability: None,
            embedding: vec![],
            periocular,
            crop: RgbImage::new(1, 1),
        };
        let t = Thresholds {
            unmasked: 0.5,
            masked: 0.45,
            periocular: Some(0.64),
        };
        assert_eq!(t.for_face(&f(false, false)), 0.5);
        assert_eq!(t.for_face(&f(true, false)), 0.45);
        assert_eq!(t.for_face(&f(true, true)), 0.64);
        assert_eq!(f(true, true).space(), Space::Periocular);
        assert_eq!(f(true, false).space(), Space::Face);
        // A periocular embedding without a periocular threshold never passes.
        let none = Thresholds {
            periocular: None,
            ..t
        };
        assert_eq!(none.for_face(&f(true, true)), f32::INFINITY);
    }

    /// A detector that finds one face whose landmarks are the template's
    /// (so alignment is the identity on a crop-sized frame).
    struct OneFace(AlignSection);

    impl Detector for OneFace {
        fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, crate::face::detect::DetectError> {
            Ok(vec![Face {
                bbox: [0.0, 0.0, img.width() as f32, img.height() as f32],
                score: 0.99,
                landmarks: self.0.template,
            }])
        }
    }

    /// An embedder whose embedding is the mean red and blue of the crop's
    /// bottom rows (and a constant): blue fabric, bare skin and the
    /// periocular crop's grey all embed differently. `reversed` gives the
    /// same numbers in reverse order: another network.
    struct BottomColour {
        reversed: bool,
    }
    const WHOLE_NET: BottomColour = BottomColour { reversed: false };
    const PERI_NET: BottomColour = BottomColour { reversed: true };

    impl Embedder for BottomColour {
        fn name(&self) -> &str {
            if self.reversed {
                "reversed"
            } else {
                "bottom-colour"
            }
        }
        fn dim(&self) -> usize {
            3
        }
        fn crop_size(&self) -> u32 {
            112
        }
        fn embed_batch(
            &self,
            crops: &[&RgbImage],
        ) -> Result<Vec<crate::face::embed::Embedding>, crate::face::embed::EmbedError> {
            Ok(crops
                .iter()
                .map(|c| {
                    let (mut r, mut b, mut n) = (0.0, 0.0, 0.0);
                    for y in c.height() - 8..c.height() {
                        for x in 0..c.width() {
                            let p = c.get_pixel(x, y);
                            r += p[0] as f32 / 255.0;
                            b += p[2] as f32 / 255.0;
                            n += 1.0;
                        }
                    }
                    let mut v = vec![r / n, b / n, 0.2];
                    if self.reversed {
                        v.reverse();
                    }
                    crate::face::embed::Embedding::from_vec(v)
                })
                .collect())
        }
    }

    fn align112() -> AlignSection {
        AlignSection {
            size: 112,
            template: [
                [38.29, 51.70],
                [73.53, 51.50],
                [56.03, 71.74],
                [41.55, 92.37],
                [70.73, 92.20],
            ],
            border: "clamp".into(),
        }
    }

    /// Masked = more blue than red at the bottom of the whole face (or the
    /// opposite with `invert`).
    fn classifier(invert: bool) -> crate::face::presence::Classifier {
        let k = if invert { -8.0 } else { 8.0 };
        crate::face::presence::Classifier::from_section(&crate::bundle::presence::PresenceSection {
            kind: "logistic-embedding".into(),
            model_sha256: String::new(),
            weights: vec![-k, k, 0.0],
            bias: 0.0,
            threshold: 0.9,
            data: None,
            holdout_bare_masked: None,
            holdout_masked_masked: None,
        })
    }

    /// A bare face (skin colour) and the same with blue fabric below the nose.
    fn skin_and_blue() -> (RgbImage, RgbImage) {
        let skin = RgbImage::from_pixel(112, 112, image::Rgb([200, 150, 120]));
        let mut blue = skin.clone();
        for y in 66..112 {
            for x in 0..112 {
                blue.put_pixel(x, y, image::Rgb([60, 110, 220]));
            }
        }
        (skin, blue)
    }

    fn test_engine(
        presence: Option<crate::face::presence::Classifier>,
        periocular: bool,
    ) -> Engine {
        Engine {
            detector: Box::new(OneFace(align112())),
            embedder: Box::new(WHOLE_NET),
            periocular_embedder: None,
            align: align112(),
            periocular: periocular.then_some(PeriocularMode {
                cut: 0.5,
                threshold: 0.6,
            }),
            presence,
        }
    }

    #[test]
    fn the_classifier_decides_presence_and_only_its_masked_probes_go_periocular() {
        let (skin, blue) = skin_and_blue();
        let run = |e: &Engine, img: &RgbImage, p: crate::face::presence::Params| {
            let a = e.analyze(img, 0, p).unwrap();
            (a.face.unwrap(), a.stages)
        };
        let params = crate::face::presence::Params::default();
        let grey = WHOLE_NET
            .embed(&RgbImage::from_pixel(112, 112, image::Rgb([128; 3])))
            .unwrap()
            .into_vec();
        let whole = |img: &RgbImage| WHOLE_NET.embed(img).unwrap().into_vec();

        // Bare face: the classifier says bare, one embedding of the whole face.
        let e = test_engine(Some(classifier(false)), true);
        let (f, st) = run(&e, &skin, params);
        assert!(!f.masked && !f.periocular, "{f:?}");
        assert!(f.mask_probability.unwrap() < 0.5);
        assert!(f.skin_share > 0.9);
        assert_eq!((st.embeddings, f.embedding.clone()), (1, whole(&skin)));

        // Masked face: the classifier says masked, then the periocular crop
        // is embedded (two runs) and that is the probe's embedding.
        let (f, st) = run(&e, &blue, params);
        assert!(f.masked && f.periocular, "{f:?}");
        assert!(f.mask_probability.unwrap() >= 0.9);
        assert_eq!(st.embeddings, 2);
        assert_eq!(f.embedding, grey);
        assert_eq!(f.space(), Space::Periocular);

        // Without periocular mode a masked probe keeps its whole-face embedding.
        let (f, st) = run(&test_engine(Some(classifier(false)), false), &blue, params);
        assert!(f.masked && !f.periocular);
        assert_eq!((st.embeddings, f.embedding.clone()), (1, whole(&blue)));

        // A configured threshold overrides the manifest's.
        let strict = crate::face::presence::Params {
            classifier_threshold: Some(0.999_999),
            ..params
        };
        let (f, _) = run(&e, &blue, strict);
        assert!(!f.masked && !f.periocular);

        // The classifier, not the skin share, decides: an (inverted)
        // classifier calling the bare face masked sends it periocular.
        let (f, _) = run(&test_engine(Some(classifier(true)), true), &skin, params);
        assert!(f.skin_share > 0.9 && f.masked && f.periocular);

        // Without a classifier the skin share decides, before one embedding.
        let e = test_engine(None, true);
        let (f, st) = run(&e, &skin, params);
        assert!(!f.masked && !f.periocular && f.mask_probability.is_none());
        assert_eq!(st.embeddings, 1);
        let (f, st) = run(&e, &blue, params);
        assert!(f.masked && f.periocular && f.skin_share < 0.35);
        assert_eq!((st.embeddings, f.embedding), (1, grey));
    }

    #[test]
    fn a_tracked_face_known_masked_is_embedded_once() {
        use crate::face::track::{TrackOptions, Tracker};
        let (skin, blue) = skin_and_blue();
        let params = crate::face::presence::Params::default();
        let grey = WHOLE_NET
            .embed(&RgbImage::from_pixel(112, 112, image::Rgb([128; 3])))
            .unwrap()
            .into_vec();
        let e = test_engine(Some(classifier(false)), true);
        let tr = Tracker::new(TrackOptions {
            every: 3,
            ..TrackOptions::default()
        });
        let run = |img: &RgbImage, p: crate::face::presence::Params| {
            let a = e.analyze_frame(img, Some(&tr), 0, p).unwrap();
            (a.face.unwrap(), a.stages)
        };
        // First frame (a search): the classifier runs on the whole face.
        let (f, st) = run(&blue, params);
        assert!(f.masked && f.periocular && f.mask_probability.unwrap() >= 0.9);
        assert_eq!((st.embeddings, st.tracked), (2, 0));
        // Tracked frames of the same face: masked is known, one embedding.
        let (f, st) = run(&blue, params);
        assert!(f.masked && f.periocular, "{f:?}");
        assert_eq!((st.embeddings, st.tracked), (1, 1));
        assert_eq!(f.embedding, grey);
        // Mask off within the track: still compared by its periocular crop
        // (until the next search).
        let (f, st) = run(&skin, params);
        assert!(f.masked && f.periocular);
        assert_eq!((st.embeddings, st.tracked), (1, 1));
        // The scheduled search runs the classifier again: bare.
        let (f, st) = run(&skin, params);
        assert!(!f.masked && !f.periocular);
        assert_eq!((st.embeddings, st.tracked), (1, 0));
        // A configured threshold above the noted probability: the classifier
        // runs on every frame.
        let strict = crate::face::presence::Params {
            classifier_threshold: Some(0.999_999),
            ..params
        };
        for _ in 0..2 {
            let (f, st) = run(&blue, strict);
            assert!(!f.masked);
            assert_eq!(st.embeddings, 1);
        }
        // Without a tracker nothing is known: two embeddings every time.
        for _ in 0..2 {
            let a = e.analyze(&blue, 0, params).unwrap();
            assert_eq!(a.stages.embeddings, 2);
        }
    }

    #[test]
    fn a_periocular_model_embeds_periocular_crops_and_only_those() {
        let (skin, blue) = skin_and_blue();
        let params = crate::face::presence::Params::default();
        let grey = RgbImage::from_pixel(112, 112, image::Rgb([128; 3]));
        let mut e = test_engine(Some(classifier(false)), true);
        e.periocular_embedder = Some(Box::new(PERI_NET));
        assert_eq!(e.periocular_embedder().name(), "reversed");

        // Bare probe: the whole-face network only.
        let f = e.analyze(&skin, 0, params).unwrap().face.unwrap();
        assert!(!f.periocular);
        assert_eq!(f.embedding, WHOLE_NET.embed(&skin).unwrap().into_vec());
        // Masked probe: presence on the whole-face network, the periocular
        // crop through the periocular network.
        let f = e.analyze(&blue, 0, params).unwrap().face.unwrap();
        assert!(f.masked && f.periocular);
        assert_eq!(f.embedding, PERI_NET.embed(&grey).unwrap().into_vec());
        assert_ne!(f.embedding, WHOLE_NET.embed(&grey).unwrap().into_vec());

        // Enrolment: the unmasked template from the whole-face network, the
        // periocular one from the periocular network.
        let a = e.analyze(&skin, 0, params).unwrap().face.unwrap();
        let t = templates_for(&e, "u", "s", &skin, &a, &[], 1).unwrap();
        let by = |c: Condition| {
            t.iter()
                .find(|t| t.condition == c)
                .unwrap()
                .embedding
                .clone()
        };
        assert_eq!(
            by(Condition::Unmasked),
            WHOLE_NET.embed(&skin).unwrap().into_vec()
        );
        assert_eq!(
            by(Condition::Periocular),
            PERI_NET.embed(&grey).unwrap().into_vec()
        );
    }

    #[test]
    fn sharpness_sees_blur() {
        let sharp = RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([if (x / 2 + y / 2) % 2 == 0 { 0 } else { 255 }; 3])
        });
        let flat = RgbImage::from_pixel(32, 32, image::Rgb([128; 3]));
        assert!(sharpness(&sharp) > 1000.0);
        assert_eq!(sharpness(&flat), 0.0);
    }
}
