//! Tracking measured against the whole-frame detector (issue 17 §1).
//!
//! Test sequences are built from real photos: each subject is a photo cut
//! around its face (head and shoulders, with the photo's own background),
//! pasted on a background photo at a size and place that change frame by
//! frame along a scripted path ([`Scenario`]): moving across the frame,
//! approaching from far to near, leaving and entering, two people, camera
//! shake, a small face far away, and a masked face (a procedural mask painted
//! on the photo). Where each face is in every frame is known (the subject
//! photo's own detection, at its full resolution, moved and scaled the same
//! way): that is the truth both paths are scored against.
//!
//! Every frame goes through both paths: the reference (the detector on the
//! whole frame, as without tracking) and a [`Tracker`]. Reported per
//! sequence: recall of the reference's faces by the tracked path (IoU ≥ 0.5),
//! tracked faces the reference does not have, landmark disagreement (mean
//! distance over the five points / the reference's inter-ocular distance),
//! whether both paths hand the pipeline the same face ([`crate::engine::pick`]),
//! each path's recall of the true faces, and the time per frame of each;
//! with an embedder, what the tracked landmarks do to the picked face's
//! embedding (cosine to the reference's, and each to the true landmarks').

use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use crate::bundle::AlignSection;
use crate::engine::pick;
use crate::face::align::align;
use crate::face::detect::{largest, DetectError, Detector, Face};
use crate::face::embed::{cosine, Embedder};
use crate::face::imageio;
use crate::face::mask::{self, MaskStyle, Procedural};
use crate::face::track::{iou, Step, TrackOptions, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum TrackEvalError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("no face found in the subject photo {0}")]
    NoFace(String),
    #[error("mask: {0}")]
    Mask(#[from] crate::face::mask::MaskError),
    #[error(transparent)]
    Image(#[from] crate::face::imageio::ImageError),
    #[error(transparent)]
    Align(#[from] crate::face::align::AlignError),
    #[error(transparent)]
    Embed(#[from] crate::face::embed::EmbedError),
}

/// A person to paste into frames: a photo cut around its face.
#[derive(Clone)]
pub struct Subject {
    pub name: String,
    img: RgbImage,
    /// The face in `img`'s coordinates (detected at the photo's resolution).
    face: Face,
}

/// Largest face side a scenario asks for, as a fraction of frame height
/// (subjects are pre-scaled so no frame upsamples them much).
const MAX_FACE: f32 = 0.65;

impl Subject {
    /// Cut `photo` around its largest face (found by `det`): 1.5 face sizes
    /// either side, 1.3 above, 2.2 below, within the photo. A face larger
    /// than needed for a `frame_h`-high frame is scaled down once here.
    pub fn from_photo(
        name: &str,
        photo: &RgbImage,
        det: &dyn Detector,
        frame_h: u32,
        masked: bool,
    ) -> Result<Subject, TrackEvalError> {
        let faces = det.detect(photo)?;
        let face = largest(&faces)
            .cloned()
            .ok_or_else(|| TrackEvalError::NoFace(name.to_string()))?;
        let mut photo = photo.clone();
        if masked {
            mask::paint(
                &mut photo,
                &face,
                &MaskStyle::Procedural(Procedural::SurgicalBlue),
                7,
            )?;
        }
        let s = face.width().max(face.height());
        let (pw, ph) = photo.dimensions();
        let [cx, cy] = [
            (face.bbox[0] + face.bbox[2]) / 2.0,
            (face.bbox[1] + face.bbox[3]) / 2.0,
        ];
        let x0 = (cx - 1.5 * s).max(0.0) as u32;
        let y0 = (cy - 1.3 * s).max(0.0) as u32;
        let x1 = ((cx + 1.5 * s) as u32).min(pw);
        let y1 = ((cy + 2.2 * s) as u32).min(ph);
        let cut = image::imageops::crop_imm(&photo, x0, y0, x1 - x0, y1 - y0).to_image();
        let moved = shift(&face, -(x0 as f32), -(y0 as f32), 1.0);
        let want = MAX_FACE * frame_h as f32;
        let (img, face) = if s > want {
            let k = want / s;
            let (w, h) = cut.dimensions();
            let small = image::imageops::resize(
                &cut,
                ((w as f32 * k).round() as u32).max(1),
                ((h as f32 * k).round() as u32).max(1),
                image::imageops::FilterType::Triangle,
            );
            (small, shift(&moved, 0.0, 0.0, k))
        } else {
            (cut, moved)
        };
        Ok(Subject {
            name: name.to_string(),
            img,
            face,
        })
    }
}

/// `f` scaled by `k` about the origin, then moved by (dx, dy).
fn shift(f: &Face, dx: f32, dy: f32, k: f32) -> Face {
    let mut f = f.clone();
    for (i, v) in f.bbox.iter_mut().enumerate() {
        *v = *v * k + if i % 2 == 0 { dx } else { dy };
    }
    for p in f.landmarks.iter_mut() {
        p[0] = p[0] * k + dx;
        p[1] = p[1] * k + dy;
    }
    f
}

/// The registry photos (under the models folder's `photos/`) each sequence
/// is made of.
pub fn scenario_photos(sc: Scenario) -> &'static [&'static str] {
    match sc {
        Scenario::Pan | Scenario::MaskedPan => &["face_recognition/obama.jpg"],
        Scenario::Approach => &["face_recognition/biden.jpg"],
        Scenario::LeaveEnter => &["face_recognition/obama2.jpg"],
        Scenario::TwoFaces => &["face_recognition/obama.jpg", "face_recognition/biden.jpg"],
        Scenario::Shake => &["skimage/astronaut.png"],
        Scenario::Far => &["face_recognition/obama3.jpg"],
    }
}

/// The registry photo every sequence is drawn on (no face in it).
pub const BACKGROUND: &str = "skimage/rocket.jpg";

/// The subjects of `sc` for frames `h` pixels high, from `models`/photos.
pub fn subjects(
    models: &Path,
    det: &dyn Detector,
    sc: Scenario,
    h: u32,
) -> Result<Vec<Subject>, TrackEvalError> {
    scenario_photos(sc)
        .iter()
        .map(|rel| {
            let img = imageio::load_rgb(&models.join("photos").join(rel))?;
            Subject::from_photo(rel, &img, det, h, sc.masked())
        })
        .collect()
}

/// [`BACKGROUND`] stretched to `w`×`h`.
pub fn background(models: &Path, w: u32, h: u32) -> Result<RgbImage, TrackEvalError> {
    let bg = imageio::load_rgb(&models.join("photos").join(BACKGROUND))?;
    Ok(image::imageops::resize(
        &bg,
        w,
        h,
        image::imageops::FilterType::Triangle,
    ))
}

/// Where a subject is at one frame: its face's centre and size (the larger
/// side of its box), in frame pixels.
#[derive(Debug, Clone, Copy)]
pub struct Pose {
    pub cx: f32,
    pub cy: f32,
    pub size: f32,
}

/// A scripted sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One face crossing the frame and back (≈ 16 px per frame at 640 wide).
    Pan,
    /// From far (9 % of the frame height) to near (60 %).
    Approach,
    /// Leaves at the right edge, is gone, enters from the left.
    LeaveEnter,
    /// One face still, another crossing in front of the background.
    TwoFaces,
    /// Hand-held camera: the face jumps up to ±4 % of the frame per frame.
    Shake,
    /// A small face (10 % of the frame height) moving slowly.
    Far,
    /// `Pan` wearing a surgical mask.
    MaskedPan,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Pan,
        Scenario::Approach,
        Scenario::LeaveEnter,
        Scenario::TwoFaces,
        Scenario::Shake,
        Scenario::Far,
        Scenario::MaskedPan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pan => "pan",
            Scenario::Approach => "approach",
            Scenario::LeaveEnter => "leave-enter",
            Scenario::TwoFaces => "two-faces",
            Scenario::Shake => "shake",
            Scenario::Far => "far",
            Scenario::MaskedPan => "masked-pan",
        }
    }

    pub fn masked(self) -> bool {
        self == Scenario::MaskedPan
    }

    pub fn subjects(self) -> usize {
        if self == Scenario::TwoFaces {
            2
        } else {
            1
        }
    }

    /// Where each subject is at frame `i` of `n` in a `w`×`h` frame.
    pub fn poses(self, i: usize, n: usize, w: u32, h: u32) -> Vec<Pose> {
        use std::f32::consts::PI;
        let t = i as f32 / (n.max(2) - 1) as f32;
        let (w, h) = (w as f32, h as f32);
        let p = |cx: f32, cy: f32, size: f32| Pose { cx, cy, size };
        match self {
            Scenario::Pan | Scenario::MaskedPan => vec![p(
                w * (0.5 + 0.35 * (2.0 * PI * t).sin()),
                h * (0.45 + 0.04 * (6.0 * PI * t).sin()),
                0.25 * h,
            )],
            Scenario::Approach => vec![p(
                w * (0.5 + 0.05 * (2.0 * PI * t).sin()),
                h * 0.5,
                h * 0.09 * (0.60f32 / 0.09).powf(t),
            )],
            Scenario::LeaveEnter => {
                let cx = if t < 0.4 {
                    0.5 + 0.85 * t / 0.4
                } else if t < 0.6 {
                    1.35
                } else {
                    -0.35 + 0.85 * (t - 0.6) / 0.4
                };
                vec![p(w * cx, h * 0.45, 0.25 * h)]
            }
            Scenario::TwoFaces => vec![
                p(w * (0.28 + 0.02 * (2.0 * PI * t).sin()), h * 0.45, 0.22 * h),
                p(w * (0.85 - 0.3 * (PI * t).sin()), h * 0.5, 0.18 * h),
            ],
            Scenario::Shake => {
                let mut rng = mask::Rng::new(0x5ae4 + i as u64);
                vec![p(
                    w * 0.5 + rng.range(-0.04, 0.04) * w,
                    h * 0.45 + rng.range(-0.04, 0.04) * h,
                    0.3 * h * (1.0 + rng.range(-0.05, 0.05)),
                )]
            }
            Scenario::Far => vec![p(w * (0.5 + 0.3 * (2.0 * PI * t).sin()), h * 0.4, 0.1 * h)],
        }
    }
}

/// One frame of a sequence: `bg` (already frame-sized) with each subject at
/// its pose, and where their faces truly are.
pub fn render(bg: &RgbImage, subjects: &[&Subject], poses: &[Pose]) -> (RgbImage, Vec<Face>) {
    let mut frame = bg.clone();
    let mut truth = Vec::with_capacity(poses.len());
    for (s, pose) in subjects.iter().zip(poses) {
        let size = s.face.width().max(s.face.height());
        let k = pose.size / size;
        let (w, h) = s.img.dimensions();
        let (nw, nh) = (
            ((w as f32 * k).round() as u32).max(1),
            ((h as f32 * k).round() as u32).max(1),
        );
        let img = image::imageops::resize(&s.img, nw, nh, image::imageops::FilterType::Triangle);
        let (kx, ky) = (nw as f32 / w as f32, nh as f32 / h as f32);
        let fc = [
            (s.face.bbox[0] + s.face.bbox[2]) / 2.0 * kx,
            (s.face.bbox[1] + s.face.bbox[3]) / 2.0 * ky,
        ];
        let (x0, y0) = ((pose.cx - fc[0]).round(), (pose.cy - fc[1]).round());
        image::imageops::overlay(&mut frame, &img, x0 as i64, y0 as i64);
        let mut f = s.face.clone();
        for (i, v) in f.bbox.iter_mut().enumerate() {
            *v = if i % 2 == 0 {
                *v * kx + x0
            } else {
                *v * ky + y0
            };
        }
        for p in f.landmarks.iter_mut() {
            p[0] = p[0] * kx + x0;
            p[1] = p[1] * ky + y0;
        }
        truth.push(f);
    }
    (frame, truth)
}

/// A true face counts when its box lies wholly inside the frame and it is at
/// least this wide.
pub const MIN_TRUE_FACE: f32 = 24.0;

/// One sequence's results.
#[derive(Debug, Clone, Default)]
pub struct SeqReport {
    pub name: String,
    pub frames: usize,
    /// Whole-frame searches the tracker made (the first frame's included).
    pub searches: usize,
    /// Faces the reference found, and how many the tracked path found too.
    pub ref_faces: usize,
    pub ref_matched: usize,
    /// Tracked faces that match no reference face.
    pub extra: usize,
    /// Landmark disagreement of matched faces, per face (fraction of the
    /// reference's inter-ocular distance).
    pub nme: Vec<f32>,
    /// Frames where both paths give the pipeline the same face (or none).
    pub same_pick: usize,
    /// True faces fully in the frame, and how many each path found.
    pub truth: usize,
    pub truth_ref: usize,
    pub truth_tracked: usize,
    /// Landmark error of each path's found true faces (fraction of the true
    /// inter-ocular distance).
    pub truth_nme_ref: Vec<f32>,
    pub truth_nme_tracked: Vec<f32>,
    /// With an embedder: cosine between the embeddings of the picked face
    /// aligned on the tracked and on the reference landmarks, and of each
    /// against the face aligned on its true landmarks.
    pub cos_ref: Vec<f32>,
    pub cos_truth_ref: Vec<f32>,
    pub cos_truth_tracked: Vec<f32>,
    /// Milliseconds per frame, each path.
    pub ref_ms: Vec<f64>,
    pub tracked_ms: Vec<f64>,
}

fn iod(f: &Face) -> f32 {
    let [l, r, ..] = f.landmarks;
    ((r[0] - l[0]).powi(2) + (r[1] - l[1]).powi(2))
        .sqrt()
        .max(1.0)
}

/// Mean landmark distance between `a` and `b` over `b`'s inter-ocular distance.
pub fn nme(a: &Face, b: &Face) -> f32 {
    let d: f32 = a
        .landmarks
        .iter()
        .zip(&b.landmarks)
        .map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt())
        .sum();
    d / 5.0 / iod(b)
}

fn best_match<'a>(f: &Face, among: &'a [Face], min_iou: f32) -> Option<&'a Face> {
    among
        .iter()
        .map(|g| (iou(&f.bbox, &g.bbox), g))
        .filter(|(v, _)| *v >= min_iou)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, g)| g)
}

/// An embedder and the alignment it needs: measures what tracked landmarks
/// do to the embedding.
pub struct Recognition<'a> {
    pub embedder: &'a dyn Embedder,
    pub align: &'a AlignSection,
}

impl Recognition<'_> {
    fn embed(&self, img: &RgbImage, f: &Face) -> Result<Vec<f32>, TrackEvalError> {
        let crop = align(img, &f.landmarks, self.align)?;
        Ok(self.embedder.embed(&crop)?.into_vec())
    }
}

/// Run `n` frames of `sc` through the reference and the tracker.
pub fn run(
    det: &dyn Detector,
    opts: &TrackOptions,
    sc: Scenario,
    subjects: &[&Subject],
    bg: &RgbImage,
    n: usize,
    rec: Option<&Recognition>,
) -> Result<SeqReport, TrackEvalError> {
    let (w, h) = bg.dimensions();
    let tracker = Tracker::new(opts.clone());
    let mut r = SeqReport {
        name: sc.name().to_string(),
        frames: n,
        ..Default::default()
    };
    // Frames are 1/30 s apart for the tracker's clock, however long a frame
    // took to render and detect here.
    let clock = Instant::now();
    for i in 0..n {
        let poses = sc.poses(i, n, w, h);
        let (frame, truth) = render(bg, subjects, &poses);
        let t = Instant::now();
        let reference = det.detect(&frame)?;
        r.ref_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let now = clock + std::time::Duration::from_micros(33_333 * i as u64);
        let t = Instant::now();
        let (tracked, step) = tracker.detect(det, &frame, now)?;
        r.tracked_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if matches!(step, Step::Full(_)) {
            r.searches += 1;
        }
        r.ref_faces += reference.len();
        for f in &reference {
            if let Some(g) = best_match(f, &tracked, 0.5) {
                r.ref_matched += 1;
                r.nme.push(nme(g, f));
            }
        }
        r.extra += tracked
            .iter()
            .filter(|g| best_match(g, &reference, 0.5).is_none())
            .count();
        let a = pick(&reference, w, h, 0);
        let b = pick(&tracked, w, h, 0);
        r.same_pick += match (a, b) {
            (None, None) => 1,
            (Some(a), Some(b)) => usize::from(iou(&a.bbox, &b.bbox) >= 0.5),
            _ => 0,
        };
        if let (Some(rec), Some(a), Some(b)) = (rec, a, b) {
            if iou(&a.bbox, &b.bbox) >= 0.5 {
                let (ea, eb) = (rec.embed(&frame, a)?, rec.embed(&frame, b)?);
                r.cos_ref.push(cosine(&ea, &eb));
                if let Some(t) = best_match(a, &truth, 0.4) {
                    let et = rec.embed(&frame, t)?;
                    r.cos_truth_ref.push(cosine(&ea, &et));
                    r.cos_truth_tracked.push(cosine(&eb, &et));
                }
            }
        }
        for f in truth.iter().filter(|f| {
            f.bbox[0] >= 0.0
                && f.bbox[1] >= 0.0
                && f.bbox[2] <= w as f32
                && f.bbox[3] <= h as f32
                && f.width() >= MIN_TRUE_FACE
        }) {
            r.truth += 1;
            if let Some(g) = best_match(f, &reference, 0.4) {
                r.truth_ref += 1;
                r.truth_nme_ref.push(nme(g, f));
            }
            if let Some(g) = best_match(f, &tracked, 0.4) {
                r.truth_tracked += 1;
                r.truth_nme_tracked.push(nme(g, f));
            }
        }
    }
    Ok(r)
}

/// Quantile `q` (0..=1) of `v` (nearest rank); 0 for an empty slice.
pub fn quantile<T: Copy + PartialOrd + Default>(v: &[T], q: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let k = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[k]
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_nme() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 1.0), 4.0);
        assert_eq!(quantile::<f32>(&[], 0.5), 0.0);
        let f = Face {
            bbox: [0.0, 0.0, 10.0, 10.0],
            score: 1.0,
            landmarks: [[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [2.0, 8.0], [8.0, 8.0]],
        };
        let g = shift(&f, 1.0, 0.0, 1.0);
        assert!((nme(&g, &f) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn render_places_the_face_at_its_pose() {
        // A subject whose "photo" is a 100×100 grey square with its face box
        // in the middle half.
        let s = Subject {
            name: "s".into(),
            img: RgbImage::from_pixel(100, 100, image::Rgb([200, 200, 200])),
            face: Face {
                bbox: [25.0, 25.0, 75.0, 75.0],
                score: 1.0,
                landmarks: [
                    [40.0, 45.0],
                    [60.0, 45.0],
                    [50.0, 55.0],
                    [42.0, 65.0],
                    [58.0, 65.0],
                ],
            },
        };
        let bg = RgbImage::new(640, 480);
        let pose = Pose {
            cx: 300.0,
            cy: 200.0,
            size: 100.0,
        };
        let (frame, truth) = render(&bg, &[&s], &[pose]);
        let f = &truth[0];
        assert!((f.bbox[0] - 250.0).abs() < 1.0 && (f.bbox[3] - 250.0).abs() < 1.0);
        assert_eq!(frame.get_pixel(300, 200)[0], 200);
        assert_eq!(frame.get_pixel(100, 200)[0], 0);
        // Off the frame to the right: nothing drawn, the truth is outside.
        let away = Pose { cx: 900.0, ..pose };
        let (frame, truth) = render(&bg, &[&s], &[away]);
        assert!(truth[0].bbox[0] > 640.0);
        assert!(frame.pixels().all(|p| p[0] == 0));
    }
}
