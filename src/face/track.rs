//! Detection by tracking (issue 17 §1): once faces are found, look for each
//! one again in a small square region around where it was, instead of
//! searching the whole frame.
//!
//! A region is `margin` times the face's size, centred where the face is
//! expected (its last box moved by its last displacement), and at least
//! [`TrackOptions::side`] pixels: a small face is detected at the camera's
//! full resolution (it stays as large as it is in the frame), a large one on
//! the region downscaled to `side`. Every region goes to the network as one
//! `side`×`side` input, so one plan serves them all (~8 ms for 192×192 on
//! this project's x86 machine against ~50–60 ms for a 640×480 frame).
//!
//! The whole frame is searched (the [`Detector::detect`] reference path)
//! when there is no track, every [`TrackOptions::every`] frames (new faces
//! enter the tracks there), when the last detection is older than
//! [`TrackOptions::max_age`] or the frame size changed, and on the same
//! frame whenever a tracked face is lost: not found in its region, found
//! cut by the region's edge, or changed in size by more than 2×. Tracking
//! can then only be wrong for the frames between two searches, and a face
//! that leaves is searched for at once.
//!
//! State is per video stream: a [`Tracker`] must only see consecutive frames
//! of one camera (the daemon keeps one per loaded model set); photos and
//! evaluation images go through the detector directly.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};

use super::detect::{DetectError, Detector, Face};

/// How a [`Tracker`] follows faces.
#[derive(Debug, Clone)]
pub struct TrackOptions {
    /// Search the whole frame at least every `every` frames (1: always,
    /// which is the reference path).
    pub every: u32,
    /// Side of the square the network sees for a tracked face, pixels.
    pub side: u32,
    /// Region side over the face's size (the larger of its box's sides).
    pub margin: f32,
    /// A track older than this is stale: search the whole frame.
    pub max_age: Duration,
    /// Faces followed at once (the largest of the last search).
    pub max_tracks: usize,
}

impl Default for TrackOptions {
    fn default() -> Self {
        TrackOptions {
            every: 10,
            side: 192,
            margin: 1.8,
            max_age: Duration::from_millis(300),
            max_tracks: 3,
        }
    }
}

/// What a frame's detection was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Whole frame, because of this.
    Full(Why),
    /// Only the tracked faces' regions (this many).
    Tracked(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No face was being tracked (first frame, or the last search found none).
    NoTrack,
    /// `every` frames since the last whole-frame search.
    Schedule,
    /// The last detection is older than `max_age`, or the frame size changed.
    Stale,
    /// A tracked face was not found again in its region.
    Lost,
}

#[derive(Debug, Clone)]
struct Track {
    face: Face,
    /// Centre displacement over the last frame (0 after a search).
    velocity: [f32; 2],
    /// The mask presence classifier's probability for this face on an
    /// earlier frame of the track (None after a whole-frame search).
    mask_probability: Option<f32>,
}

#[derive(Debug, Default)]
struct State {
    tracks: Vec<Track>,
    since_full: u32,
    last: Option<Instant>,
    size: (u32, u32),
}

/// Follows the faces of one video stream.
#[derive(Debug, Default)]
pub struct Tracker {
    opts: TrackOptions,
    st: Mutex<State>,
}

/// A region of the frame: its top-left corner and size (whole pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

fn centre(f: &Face) -> [f32; 2] {
    [(f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0]
}

fn size(f: &Face) -> f32 {
    f.width().max(f.height()).max(1.0)
}

/// The square region to look for a face of size `face` expected at `c`:
/// `margin`×`face` (at least `side`) pixels, moved inside the frame; a
/// region larger than the frame in one direction takes all of it.
pub fn region(c: [f32; 2], face: f32, margin: f32, side: u32, w: u32, h: u32) -> Region {
    let r = (face * margin).max(side as f32).round().max(1.0) as u32;
    let place = |c: f32, len: u32| -> (u32, u32) {
        if r >= len {
            return (0, len);
        }
        let start = (c - r as f32 / 2.0).round().clamp(0.0, (len - r) as f32) as u32;
        (start, r)
    };
    let (x, rw) = place(c[0], w);
    let (y, rh) = place(c[1], h);
    Region { x, y, w: rw, h: rh }
}

/// The `side`×`side` network input for `r`: the region, downscaled when it
/// is larger than `side`, at the top left; the rest mid-grey. Returns the
/// input and the scale from input to frame pixels.
pub fn region_input(img: &RgbImage, r: Region, side: u32) -> (RgbImage, f32) {
    let long = r.w.max(r.h);
    let view = image::imageops::crop_imm(img, r.x, r.y, r.w, r.h);
    let mut canvas = RgbImage::from_pixel(side, side, Rgb([127, 127, 127]));
    if long <= side {
        image::imageops::replace(&mut canvas, &*view, 0, 0);
        return (canvas, 1.0);
    }
    let s = side as f32 / long as f32;
    let nw = ((r.w as f32 * s).round() as u32).clamp(1, side);
    let nh = ((r.h as f32 * s).round() as u32).clamp(1, side);
    // At 2× or more, area averaging (the image crate's thumbnail: 0.9 ms for
    // a 450 px region here, against 2.9 ms for a triangle filter). Below 2×
    // it samples unevenly (an output pixel covers one or two input pixels)
    // and cost the masked sequence's landmarks 1.5 % of the eye distance
    // (docs/PERFORMANCE.md, "Tracking"): a triangle filter there.
    let small = if long >= 2 * side {
        image::imageops::thumbnail(&*view, nw, nh)
    } else {
        image::imageops::resize(
            &view.to_image(),
            nw,
            nh,
            image::imageops::FilterType::Triangle,
        )
    };
    image::imageops::replace(&mut canvas, &small, 0, 0);
    // Scale back per axis (rounding makes them differ by < 1 %): average.
    let back = (r.w as f32 / nw as f32 + r.h as f32 / nh as f32) / 2.0;
    (canvas, back)
}

/// A face found in `r`'s network input ([`region_input`], `back` = its
/// scale to frame pixels), in the frame's coordinates.
pub fn to_frame(mut f: Face, r: Region, back: f32) -> Face {
    for (i, v) in f.bbox.iter_mut().enumerate() {
        *v = *v * back + if i % 2 == 0 { r.x } else { r.y } as f32;
    }
    for p in f.landmarks.iter_mut() {
        p[0] = p[0] * back + r.x as f32;
        p[1] = p[1] * back + r.y as f32;
    }
    f
}

/// Centre displacement of `f` from the nearest face in `old`, when that is
/// closer than twice `f`'s size (else none).
fn motion(f: &Face, old: &[Track]) -> [f32; 2] {
    let m = centre(f);
    old.iter()
        .map(|t| {
            let c = centre(&t.face);
            [m[0] - c[0], m[1] - c[1]]
        })
        .filter(|d| d[0].hypot(d[1]) < 2.0 * size(f))
        .min_by(|a, b| (a[0].hypot(a[1])).total_cmp(&b[0].hypot(b[1])))
        .unwrap_or([0.0, 0.0])
}

/// Intersection over union of two boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

impl Tracker {
    pub fn new(opts: TrackOptions) -> Tracker {
        Tracker {
            opts: TrackOptions {
                every: opts.every.max(1),
                side: opts.side.max(super::detect::MIN_SIDE),
                margin: if opts.margin.is_finite() {
                    opts.margin.max(1.2)
                } else {
                    TrackOptions::default().margin
                },
                max_tracks: opts.max_tracks.max(1),
                ..opts
            },
            st: Mutex::new(State::default()),
        }
    }

    pub fn options(&self) -> &TrackOptions {
        &self.opts
    }

    /// Forget the tracks (the next frame is searched whole).
    pub fn reset(&self) {
        if let Ok(mut st) = self.st.lock() {
            *st = State::default();
        }
    }

    /// The mask presence probability noted for `face` (one of the last
    /// [`Tracker::detect`]'s faces) on an earlier frame of its track; None
    /// when its track began with the last whole-frame search.
    pub fn mask_probability(&self, face: &Face) -> Option<f32> {
        let st = self.st.lock().ok()?;
        st.tracks
            .iter()
            .find(|t| t.face.bbox == face.bbox)
            .and_then(|t| t.mask_probability)
    }

    /// Note the mask presence probability of `face` (one of the last
    /// [`Tracker::detect`]'s faces) for the next frames of its track.
    pub fn note_mask_probability(&self, face: &Face, p: f32) {
        if let Ok(mut st) = self.st.lock() {
            if let Some(t) = st.tracks.iter_mut().find(|t| t.face.bbox == face.bbox) {
                t.mask_probability = Some(p);
            }
        }
    }

    /// Faces in `img` (the next frame of the stream, taken at `now`), best
    /// score first, and how they were found.
    pub fn detect(
        &self,
        det: &dyn Detector,
        img: &RgbImage,
        now: Instant,
    ) -> Result<(Vec<Face>, Step), DetectError> {
        let mut st = self
            .st
            .lock()
            .map_err(|_| DetectError::Inference("tracker state poisoned".into()))?;
        let (w, h) = img.dimensions();
        let why = if st.tracks.is_empty() {
            Some(Why::NoTrack)
        } else if st.size != (w, h)
            || st
                .last
                .is_none_or(|t| now.duration_since(t) > self.opts.max_age)
        {
            Some(Why::Stale)
        } else if st.since_full + 1 >= self.opts.every {
            Some(Why::Schedule)
        } else {
            None
        };
        let why = match why {
            Some(why) => why,
            None => match self.follow(det, img, &st.tracks)? {
                Some(tracks) => {
                    let n = tracks.len();
                    let mut faces: Vec<Face> = tracks.iter().map(|t| t.face.clone()).collect();
                    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
                    st.tracks = tracks;
                    st.since_full += 1;
                    st.last = Some(now);
                    return Ok((faces, Step::Tracked(n)));
                }
                None => Why::Lost,
            },
        };
        // Searching the whole frame: a failure must not leave old tracks.
        let old = std::mem::take(&mut st.tracks);
        let fresh = why == Why::Lost || why == Why::Schedule;
        let faces = det.detect(img)?;
        let mut by_size: Vec<&Face> = faces.iter().collect();
        by_size.sort_by(|a, b| b.area().total_cmp(&a.area()));
        st.tracks = by_size
            .into_iter()
            .take(self.opts.max_tracks)
            .map(|f| Track {
                face: f.clone(),
                // A face that was tracked on the last frame keeps moving as
                // it moved since (the nearest old track within its size).
                velocity: if fresh { motion(f, &old) } else { [0.0, 0.0] },
                mask_probability: None,
            })
            .collect();
        st.since_full = 0;
        st.last = Some(now);
        st.size = (w, h);
        Ok((faces, Step::Full(why)))
    }

    /// Every track found again in its region, or None when one is lost.
    fn follow(
        &self,
        det: &dyn Detector,
        img: &RgbImage,
        tracks: &[Track],
    ) -> Result<Option<Vec<Track>>, DetectError> {
        let (w, h) = img.dimensions();
        let mut out: Vec<Track> = Vec::with_capacity(tracks.len());
        for t in tracks {
            let c = centre(&t.face);
            let expect = [c[0] + t.velocity[0], c[1] + t.velocity[1]];
            let s = size(&t.face);
            let r = region(expect, s, self.opts.margin, self.opts.side, w, h);
            let (input, back) = region_input(img, r, self.opts.side);
            let found = det.detect_raw(&input)?;
            // The face in the region nearest to where it was expected, of a
            // plausible size.
            let best = found
                .into_iter()
                .map(|f| to_frame(f, r, back))
                .filter(|f| {
                    let ratio = size(f) / s;
                    (0.5..=2.0).contains(&ratio)
                })
                .min_by(|a, b| {
                    let d = |f: &Face| {
                        let m = centre(f);
                        (m[0] - expect[0]).powi(2) + (m[1] - expect[1]).powi(2)
                    };
                    d(a).total_cmp(&d(b))
                });
            let Some(f) = best else {
                return Ok(None);
            };
            // Cut by an edge of the region that is not the frame's: part of
            // the face is outside what the network saw.
            let edge = 1.0;
            let cut = (r.x > 0 && f.bbox[0] <= r.x as f32 + edge)
                || (r.y > 0 && f.bbox[1] <= r.y as f32 + edge)
                || (r.x + r.w < w && f.bbox[2] >= (r.x + r.w) as f32 - edge)
                || (r.y + r.h < h && f.bbox[3] >= (r.y + r.h) as f32 - edge);
            if cut {
                return Ok(None);
            }
            // Two tracks that found the same face: keep one.
            if out.iter().any(|o| iou(&o.face.bbox, &f.bbox) > 0.5) {
                continue;
            }
            let m = centre(&f);
            out.push(Track {
                velocity: [m[0] - c[0], m[1] - c[1]],
                face: f,
                mask_probability: t.mask_probability,
            });
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_found_in_a_scaled_region_return_to_frame_coordinates() {
        let f = Face {
            bbox: [1.0, 2.0, 11.0, 12.0],
            score: 0.9,
            landmarks: [[3.0, 4.0]; 5],
        };
        let at = |x, y| Region { x, y, w: 1, h: 1 };
        let f = to_frame(f, at(50, 40), 1.0);
        assert_eq!(f.bbox, [51.0, 42.0, 61.0, 52.0]);
        assert_eq!(f.landmarks[4], [53.0, 44.0]);
        // Found in a half-size copy: twice the size, then shifted.
        let f = to_frame(f, at(10, 0), 2.0);
        assert_eq!(f.bbox, [112.0, 84.0, 132.0, 104.0]);
        assert_eq!(f.landmarks[0], [116.0, 88.0]);
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 30.0, 10.0]), 0.0);
        let half = iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]);
        assert!((half - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0);
    }

    /// Finds white squares on black: each 4-connected-free blob's bounding
    /// box (by rows and columns of white pixels; the tests draw at most two
    /// squares side by side), landmarks at fixed fractions of the box.
    struct Squares {
        calls: std::sync::atomic::AtomicUsize,
        raw_calls: std::sync::atomic::AtomicUsize,
    }

    impl Squares {
        fn new() -> Squares {
            Squares {
                calls: 0.into(),
                raw_calls: 0.into(),
            }
        }
        fn find(img: &RgbImage) -> Vec<Face> {
            let white = |x: u32, y: u32| img.get_pixel(x, y)[0] > 200;
            let (w, h) = img.dimensions();
            let cols: Vec<bool> = (0..w).map(|x| (0..h).any(|y| white(x, y))).collect();
            let mut faces = Vec::new();
            let mut x = 0;
            while x < w {
                if !cols[x as usize] {
                    x += 1;
                    continue;
                }
                let x0 = x;
                while x < w && cols[x as usize] {
                    x += 1;
                }
                let rows: Vec<u32> = (0..h).filter(|&y| (x0..x).any(|xx| white(xx, y))).collect();
                let (y0, y1) = (rows[0] as f32, *rows.last().unwrap() as f32 + 1.0);
                let (x0, x1) = (x0 as f32, x as f32);
                let (bw, bh) = (x1 - x0, y1 - y0);
                let at = |fx: f32, fy: f32| [x0 + fx * bw, y0 + fy * bh];
                faces.push(Face {
                    bbox: [x0, y0, x1, y1],
                    score: 0.9,
                    landmarks: [
                        at(0.3, 0.4),
                        at(0.7, 0.4),
                        at(0.5, 0.6),
                        at(0.35, 0.8),
                        at(0.65, 0.8),
                    ],
                });
            }
            faces
        }
    }

    impl Detector for Squares {
        fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Squares::find(img))
        }
        fn detect_raw(&self, img: &RgbImage) -> Result<Vec<Face>, DetectError> {
            self.raw_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(img.dimensions(), (192, 192), "one input size");
            Ok(Squares::find(img))
        }
    }

    fn frame(squares: &[(u32, u32, u32)]) -> RgbImage {
        let mut img = RgbImage::new(640, 480);
        for &(x, y, s) in squares {
            for yy in y..(y + s).min(480) {
                for xx in x..(x + s).min(640) {
                    img.put_pixel(xx, yy, Rgb([255, 255, 255]));
                }
            }
        }
        img
    }

    fn counts(d: &Squares) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (d.calls.load(Relaxed), d.raw_calls.load(Relaxed))
    }

    #[test]
    fn regions_are_square_inside_the_frame_and_at_least_side() {
        // Small face: the region is `side`, centred.
        assert_eq!(
            region([320.0, 240.0], 40.0, 2.2, 160, 640, 480),
            Region {
                x: 240,
                y: 160,
                w: 160,
                h: 160
            }
        );
        // Large face: margin × size; moved inside at the corner.
        assert_eq!(
            region([10.0, 470.0], 100.0, 2.2, 160, 640, 480),
            Region {
                x: 0,
                y: 260,
                w: 220,
                h: 220
            }
        );
        // 660 px: larger than the frame both ways, so all of it.
        assert_eq!(
            region([320.0, 240.0], 300.0, 2.2, 160, 640, 480),
            Region {
                x: 0,
                y: 0,
                w: 640,
                h: 480
            }
        );
        // Larger than its height only: all rows, a square's width of columns.
        assert_eq!(
            region([100.0, 240.0], 250.0, 2.2, 160, 640, 480),
            Region {
                x: 0,
                y: 0,
                w: 550,
                h: 480
            }
        );
    }

    #[test]
    fn region_input_maps_back_to_frame_coordinates() {
        let img = frame(&[(300, 200, 100)]);
        for (face, side) in [(100.0, 160), (40.0, 160), (100.0, 96)] {
            let r = region([350.0, 250.0], face, 2.2, side, 640, 480);
            let (input, back) = region_input(&img, r, side);
            assert_eq!(input.dimensions(), (side, side));
            let f = to_frame(Squares::find(&input).remove(0), r, back);
            for (got, want) in f.bbox.iter().zip([300.0, 200.0, 400.0, 300.0]) {
                assert!((got - want).abs() <= 2.5 * back, "{:?} vs {want}", f.bbox);
            }
        }
    }

    #[test]
    fn follows_a_moving_face_with_searches_on_schedule() {
        let d = Squares::new();
        let t = Tracker::new(TrackOptions {
            every: 5,
            ..TrackOptions::default()
        });
        let t0 = Instant::now();
        let mut steps = Vec::new();
        for i in 0..10u32 {
            let img = frame(&[(100 + 20 * i, 150, 90)]);
            let (faces, step) = t
                .detect(&d, &img, t0 + Duration::from_millis(33 * i as u64))
                .unwrap();
            assert_eq!(faces.len(), 1);
            assert!(
                (faces[0].bbox[0] - (100 + 20 * i) as f32).abs() <= 2.0,
                "{i}: {:?}",
                faces[0].bbox
            );
            steps.push(step);
        }
        use Step::*;
        assert_eq!(
            steps,
            [
                Full(Why::NoTrack),
                Tracked(1),
                Tracked(1),
                Tracked(1),
                Tracked(1),
                Full(Why::Schedule),
                Tracked(1),
                Tracked(1),
                Tracked(1),
                Tracked(1),
            ]
        );
        assert_eq!(counts(&d), (2, 8));
    }

    #[test]
    fn a_fast_face_is_followed_where_it_is_going() {
        // 60 px face, 75 px per frame: its region (192 px) around where it
        // was cuts it; around where it is going, it does not.
        let d = Squares::new();
        let t = Tracker::new(TrackOptions {
            every: 100,
            ..TrackOptions::default()
        });
        let t0 = Instant::now();
        let mut steps = Vec::new();
        for i in 0..7u32 {
            let img = frame(&[(100 + 75 * i, 200, 60)]);
            let (faces, step) = t
                .detect(&d, &img, t0 + Duration::from_millis(33 * i as u64))
                .unwrap();
            assert_eq!(faces[0].bbox[0], (100 + 75 * i) as f32);
            steps.push(step);
        }
        // Lost once (no motion known yet), then followed.
        assert_eq!(
            steps[..2],
            [Step::Full(Why::NoTrack), Step::Full(Why::Lost)]
        );
        assert!(
            steps[2..].iter().all(|s| *s == Step::Tracked(1)),
            "{steps:?}"
        );
    }

    #[test]
    fn a_noted_mask_probability_follows_the_track_until_a_search() {
        let d = Squares::new();
        let t = Tracker::new(TrackOptions {
            every: 3,
            ..TrackOptions::default()
        });
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_millis(33 * i);
        let (f, _) = t.detect(&d, &frame(&[(100, 100, 80)]), at(0)).unwrap();
        assert_eq!(t.mask_probability(&f[0]), None);
        t.note_mask_probability(&f[0], 0.97);
        let (f, step) = t.detect(&d, &frame(&[(110, 100, 80)]), at(1)).unwrap();
        assert_eq!(step, Step::Tracked(1));
        assert_eq!(t.mask_probability(&f[0]), Some(0.97));
        // A face that is not one of the tracker's: nothing.
        let mut other = f[0].clone();
        other.bbox[0] += 1.0;
        assert_eq!(t.mask_probability(&other), None);
        let (f, step) = t.detect(&d, &frame(&[(120, 100, 80)]), at(2)).unwrap();
        assert_eq!(step, Step::Tracked(1));
        assert_eq!(t.mask_probability(&f[0]), Some(0.97));
        // The scheduled search starts the track afresh.
        let (f, step) = t.detect(&d, &frame(&[(130, 100, 80)]), at(3)).unwrap();
        assert_eq!(step, Step::Full(Why::Schedule));
        assert_eq!(t.mask_probability(&f[0]), None);
    }

    #[test]
    fn a_lost_face_is_searched_for_on_the_same_frame() {
        let d = Squares::new();
        let t = Tracker::new(TrackOptions::default());
        let t0 = Instant::now();
        t.detect(&d, &frame(&[(100, 100, 80)]), t0).unwrap();
        // Jumped far away: not in its region, found by the whole-frame search.
        let (faces, step) = t
            .detect(
                &d,
                &frame(&[(500, 350, 80)]),
                t0 + Duration::from_millis(33),
            )
            .unwrap();
        assert_eq!(step, Step::Full(Why::Lost));
        assert_eq!(faces[0].bbox[0], 500.0);
        // Gone: the search finds nothing, and nothing is tracked after.
        let (faces, step) = t
            .detect(&d, &frame(&[]), t0 + Duration::from_millis(66))
            .unwrap();
        assert!(faces.is_empty() && step == Step::Full(Why::Lost));
        let (_, step) = t
            .detect(&d, &frame(&[]), t0 + Duration::from_millis(99))
            .unwrap();
        assert_eq!(step, Step::Full(Why::NoTrack));
    }

    #[test]
    fn a_face_cut_by_its_region_or_grown_is_lost() {
        let d = Squares::new();
        let t = Tracker::new(TrackOptions::default());
        let t0 = Instant::now();
        t.detect(&d, &frame(&[(280, 200, 60)]), t0).unwrap();
        // Region is 192 around (310, 230): x 214..406. A face moved so it
        // crosses x = 406 is cut.
        let (_, step) = t
            .detect(
                &d,
                &frame(&[(350, 200, 60)]),
                t0 + Duration::from_millis(33),
            )
            .unwrap();
        assert_eq!(step, Step::Full(Why::Lost));
        // Where it was, less than half its size: another face.
        let (_, step) = t
            .detect(
                &d,
                &frame(&[(330, 190, 25)]),
                t0 + Duration::from_millis(66),
            )
            .unwrap();
        assert_eq!(step, Step::Full(Why::Lost));
    }

    #[test]
    fn stale_tracks_and_new_frame_sizes_search_the_whole_frame() {
        let d = Squares::new();
        let t = Tracker::new(TrackOptions::default());
        let t0 = Instant::now();
        let img = frame(&[(200, 200, 80)]);
        t.detect(&d, &img, t0).unwrap();
        let (_, step) = t.detect(&d, &img, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(step, Step::Full(Why::Stale));
        let small = image::imageops::crop_imm(&img, 0, 0, 400, 400).to_image();
        let (_, step) = t
            .detect(&d, &small, t0 + Duration::from_millis(1033))
            .unwrap();
        assert_eq!(step, Step::Full(Why::Stale));
        t.reset();
        let (_, step) = t
            .detect(&d, &small, t0 + Duration::from_millis(1066))
            .unwrap();
        assert_eq!(step, Step::Full(Why::NoTrack));
    }

    #[test]
    fn two_faces_are_followed_in_their_own_regions() {
        let d = Squares::new();
        let t = Tracker::new(TrackOptions::default());
        let t0 = Instant::now();
        for i in 0..4u32 {
            let img = frame(&[(60 + 10 * i, 100, 70), (420 - 10 * i, 250, 50)]);
            let (faces, step) = t
                .detect(&d, &img, t0 + Duration::from_millis(33 * i as u64))
                .unwrap();
            assert_eq!(faces.len(), 2, "{i}");
            if i > 0 {
                assert_eq!(step, Step::Tracked(2));
            }
        }
        assert_eq!(counts(&d), (1, 6));
    }
}
