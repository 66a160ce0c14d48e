//! `facegate eval antispoof`: the RGB anti-spoofing model's error rates on
//! folders of bona fide and attack images (ISO/IEC 30107-3 terms: BPCER,
//! the share of bona fide presentations refused; APCER, the share of attack
//! presentations accepted), with the sample sizes (docs/LIVENESS.md).
//!
//! Each image goes through the device pipeline: the detector (with its
//! padding rule), the face the daemon would pick, the anti-spoofing crop and
//! score. An image with no face is counted apart: the daemon would not
//! reach a decision on it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bundle::Bundle;
use crate::face::antispoof::TractAntispoof;
use crate::face::detect::{Detector, DetectorOptions, TractDetector};

use super::EvalError;

/// One row of the report: a folder of images, all bona fide or all attacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub dir: PathBuf,
    /// Only files whose name ends with this (e.g. M2FRED's masked "-1-0.png").
    pub suffix: Option<String>,
    pub attack: bool,
}

impl Set {
    /// `DIR` or `DIR#SUFFIX`.
    pub fn parse(spec: &str, attack: bool) -> Set {
        match spec.rsplit_once('#') {
            Some((d, s)) if !s.is_empty() => Set {
                dir: d.into(),
                suffix: Some(s.into()),
                attack,
            },
            _ => Set {
                dir: spec.into(),
                suffix: None,
                attack,
            },
        }
    }

    fn label(&self) -> String {
        match &self.suffix {
            Some(s) => format!("{} (*{s})", self.dir.display()),
            None => self.dir.display().to_string(),
        }
    }
}

pub struct Options {
    pub models: PathBuf,
    pub bundle: String,
    pub detector: String,
    pub sets: Vec<Set>,
    /// At most this many images per set, evenly spaced in name order (0: all).
    pub limit: usize,
    /// Thresholds to report (a face is refused below).
    pub thresholds: Vec<f32>,
}

/// Image files under `dir` (recursively), sorted, filtered by `suffix`,
/// thinned to `limit` evenly spaced ones.
pub fn images(dir: &Path, suffix: Option<&str>, limit: usize) -> Result<Vec<PathBuf>, EvalError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| EvalError::Io {
            path: d.clone(),
            source,
        })?;
        for e in rd {
            let p = e
                .map_err(|source| EvalError::Io {
                    path: d.clone(),
                    source,
                })?
                .path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let lower = name.to_ascii_lowercase();
            let is_image = [".jpg", ".jpeg", ".png", ".bmp", ".webp"]
                .iter()
                .any(|x| lower.ends_with(x));
            if is_image && suffix.is_none_or(|s| name.ends_with(s)) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(thin(out, limit))
}

/// `limit` evenly spaced items of `v` (all when `limit` is 0 or larger).
pub fn thin<T>(v: Vec<T>, limit: usize) -> Vec<T> {
    if limit == 0 || v.len() <= limit {
        return v;
    }
    let n = v.len();
    v.into_iter()
        .enumerate()
        .filter(|(i, _)| (i * limit) / n != ((i + 1) * limit) / n)
        .map(|(_, x)| x)
        .collect()
}

/// Scores of one set: None for an image without a face.
pub struct Scored {
    pub set: Set,
    pub scores: Vec<Option<f32>>,
}

/// (refused, accepted) counts of the scored faces at `threshold`.
pub fn split(scores: &[Option<f32>], threshold: f32) -> (usize, usize) {
    let faces: Vec<f32> = scores.iter().flatten().copied().collect();
    let refused = faces.iter().filter(|&&s| s < threshold).count();
    (refused, faces.len() - refused)
}

/// The rate as "12.3 % (k / n)".
fn rate(k: usize, n: usize) -> String {
    if n == 0 {
        "- (0 faces)".into()
    } else {
        format!("{:.1} % ({k} / {n})", 100.0 * k as f64 / n as f64)
    }
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

pub fn report(o: &Options, scored: &[Scored], name: &str) -> String {
    let mut s = format!(
        "# RGB anti-spoofing: {name}\n\nA face is refused when its score is below the threshold. \
         BPCER: bona fide faces refused; APCER: attack faces accepted. Images without a face are \
         counted apart.\n\n| set | kind | images | no face | score min / median / max |"
    );
    for t in &o.thresholds {
        s += &format!(" at {t} |");
    }
    s += "\n| --- | --- | --- | --- | --- |";
    for _ in &o.thresholds {
        s += " --- |";
    }
    s += "\n";
    for r in scored {
        let mut f: Vec<f32> = r.scores.iter().flatten().copied().collect();
        f.sort_by(f32::total_cmp);
        s += &format!(
            "| {} | {} | {} | {} | {:.3} / {:.3} / {:.3} |",
            r.set.label(),
            if r.set.attack { "attack" } else { "bona fide" },
            r.scores.len(),
            r.scores.len() - f.len(),
            quantile(&f, 0.0),
            quantile(&f, 0.5),
            quantile(&f, 1.0)
        );
        for &t in &o.thresholds {
            let (refused, accepted) = split(&r.scores, t);
            s += &if r.set.attack {
                format!(" APCER {} |", rate(accepted, f.len()))
            } else {
                format!(" BPCER {} |", rate(refused, f.len()))
            };
        }
        s += "\n";
    }
    s
}

pub fn run(o: &Options) -> Result<String, EvalError> {
    let t0 = Instant::now();
    let model = TractAntispoof::from_bundle(&Bundle::open_named(&o.models, &o.bundle)?)
        .map_err(|e| EvalError::Other(e.to_string()))?;
    let det = TractDetector::from_bundle(
        &Bundle::open_named(&o.models, &o.detector)?,
        &DetectorOptions::default(),
    )?;
    let mut scored = Vec::new();
    for set in &o.sets {
        let files = images(&set.dir, set.suffix.as_deref(), o.limit)?;
        if files.is_empty() {
            return Err(EvalError::Data {
                path: set.dir.clone(),
                message: "no images (.jpg, .jpeg, .png, .bmp, .webp) here".into(),
            });
        }
        let mut scores = Vec::with_capacity(files.len());
        for p in &files {
            let img = crate::face::imageio::load_rgb(p).map_err(|e| EvalError::Data {
                path: p.clone(),
                message: e.to_string(),
            })?;
            let faces = det.detect(&img)?;
            let face = crate::engine::pick(&faces, img.width(), img.height(), 0);
            scores.push(match face {
                Some(f) => Some(model.score(&img, f.bbox).map_err(|e| EvalError::Data {
                    path: p.clone(),
                    message: e.to_string(),
                })?),
                None => None,
            });
        }
        eprintln!(
            "antispoof: {} - {} images scored ({:.0} s so far)",
            set.label(),
            files.len(),
            t0.elapsed().as_secs_f64()
        );
        scored.push(Scored {
            set: set.clone(),
            scores,
        });
    }
    Ok(report(o, &scored, model.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_take_an_optional_file_name_suffix() {
        assert_eq!(
            Set::parse("/d/m2fred#-1-0.png", false),
            Set {
                dir: "/d/m2fred".into(),
                suffix: Some("-1-0.png".into()),
                attack: false
            }
        );
        assert_eq!(Set::parse("/d/x#", true).suffix, None);
        assert_eq!(Set::parse("/d/x", true).dir, PathBuf::from("/d/x"));
    }

    #[test]
    fn thinning_keeps_evenly_spaced_items() {
        assert_eq!(thin((0..10).collect(), 0).len(), 10);
        assert_eq!(thin((0..10).collect(), 20).len(), 10);
        let t = thin((0..10).collect::<Vec<_>>(), 5);
        assert_eq!(t, [1, 3, 5, 7, 9]);
        assert_eq!(thin((0..1000).collect::<Vec<_>>(), 7).len(), 7);
    }

    #[test]
    fn rates_count_faces_only_and_refuse_below_the_threshold() {
        let s = [Some(0.2), None, Some(0.5), Some(0.9)];
        assert_eq!(split(&s, 0.5), (1, 2));
        assert_eq!(split(&s, 0.95), (3, 0));
        let o = Options {
            models: PathBuf::new(),
            bundle: String::new(),
            detector: String::new(),
            sets: Vec::new(),
            limit: 0,
            thresholds: vec![0.5],
        };
        let r = report(
            &o,
            &[
                Scored {
                    set: Set::parse("bf", false),
                    scores: s.to_vec(),
                },
                Scored {
                    set: Set::parse("atk", true),
                    scores: vec![Some(0.7), Some(0.1)],
                },
            ],
            "m",
        );
        assert!(
            r.contains("| bf | bona fide | 4 | 1 | 0.200 / 0.500 / 0.900 | BPCER 33.3 % (1 / 3) |"),
            "{r}"
        );
        assert!(r.contains("| atk | attack | 2 | 0 |"), "{r}");
        assert!(r.contains("APCER 50.0 % (1 / 2) |"), "{r}");
    }
}
