//! MaskTheFace templates warped onto a face (evaluation only).
//!
//! The template folder is given at run time; it holds `masks.cfg`, an INI
//! file with one section per template:
//!
//! ```text
//! [surgical]
//! template:   masks/templates/surgical.png
//! mask_a:     21, 97      top left corner (left cheek, nose-bridge height)
//! mask_b:     307, 22     top centre (nose bridge)
//! mask_c:     600, 99     top right corner
//! mask_d:     25, 322     bottom left (left jaw)
//! mask_e:     295, 470    bottom centre (under the chin)
//! mask_f:     600, 323    bottom right (right jaw)
//! ```
//!
//! The six anchors are matched to six points of the face frame (see
//! [`super::FaceFrame`]) derived from the five landmarks; each half of the
//! mask (a-b-d-e and b-c-e-f) gets its own least-squares affine map, so the
//! mask bends at the nose line when the head turns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{RgbImage, RgbaImage};

use super::{scene_light, FaceFrame};
use crate::face::align::{apply, AlignError};
use crate::face::detect::Face;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("no mask template {name:?} (have: {have})")]
    Unknown { name: String, have: String },
    #[error(transparent)]
    Align(#[from] AlignError),
}

/// One template: its image and the six anchors (a..f) in template pixels.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub image: RgbaImage,
    pub anchors: [[f32; 2]; 6],
}

/// The templates of one masks.cfg.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    pub templates: BTreeMap<String, Template>,
}

/// Parse masks.cfg into (name, image path as written, anchors).
/// One parsed masks.cfg entry: name, image path as written, anchors a..f.
pub type CfgEntry = (String, String, [[f32; 2]; 6]);
type Partial = (String, Option<String>, [Option<[f32; 2]>; 6]);

pub fn parse_cfg(text: &str) -> Result<Vec<CfgEntry>, String> {
    let mut out = Vec::new();
    let mut cur: Option<Partial> = None;
    let finish = |c: Option<Partial>, out: &mut Vec<CfgEntry>| -> Result<(), String> {
        // Sections without an image (e.g. "empty", "inpaint") are skipped.
        if let Some((name, Some(file), pts)) = c {
            {
                let mut a = [[0f32; 2]; 6];
                for (k, p) in pts.iter().enumerate() {
                    a[k] = p.ok_or_else(|| {
                        format!("[{name}] lacks mask_{}", (b'a' + k as u8) as char)
                    })?;
                }
                out.push((name, file, a));
            }
        }
        Ok(())
    };
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            finish(cur.take(), &mut out)?;
            cur = Some((name.trim().to_string(), None, [None; 6]));
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .or_else(|| line.split_once('='))
            .ok_or_else(|| format!("line {}: expected key: value", ln + 1))?;
        let Some(c) = cur.as_mut() else {
            return Err(format!("line {}: key outside a section", ln + 1));
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "template" {
            c.1 = Some(value.to_string());
        } else if let Some(k) = key.strip_prefix("mask_") {
            let idx = match k {
                "a" => 0,
                "b" => 1,
                "c" => 2,
                "d" => 3,
                "e" => 4,
                "f" => 5,
                _ => return Err(format!("line {}: unknown anchor {key}", ln + 1)),
            };
            let nums: Vec<f32> = value
                .split(',')
                .map(|v| v.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("line {}: {e}", ln + 1))?;
            if nums.len() != 2 || nums.iter().any(|v| !v.is_finite()) {
                return Err(format!("line {}: expected x, y", ln + 1));
            }
            c.2[idx] = Some([nums[0], nums[1]]);
        }
    }
    finish(cur.take(), &mut out)?;
    Ok(out)
}

/// Where the six anchors go on the face, in the face frame.
pub fn face_anchors(ff: &FaceFrame) -> [[f32; 2]; 6] {
    let chin = ff.mouth[1] + 0.80;
    [
        [-1.02, 0.40],
        [ff.nose[0] * 0.6, 0.22],
        [1.02, 0.40],
        [-0.92, 1.40],
        [ff.mouth[0], chin + 0.05],
        [0.92, 1.40],
    ]
}

/// Least-squares affine map from `src` to `dst` (at least 3 points).
fn affine_lsq(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<[[f64; 3]; 2]> {
    // Normal equations for [x y 1] * p = target, solved by Cramer's rule.
    let mut ata = [[0f64; 3]; 3];
    let mut atb = [[0f64; 3]; 2];
    for (s, d) in src.iter().zip(dst) {
        let r = [s[0] as f64, s[1] as f64, 1.0];
        for i in 0..3 {
            for j in 0..3 {
                ata[i][j] += r[i] * r[j];
            }
            atb[0][i] += r[i] * d[0] as f64;
            atb[1][i] += r[i] * d[1] as f64;
        }
    }
    let det3 = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let det = det3(&ata);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let mut out = [[0f64; 3]; 2];
    for (row, b) in atb.iter().enumerate() {
        for col in 0..3 {
            let mut m = ata;
            for r in 0..3 {
                m[r][col] = b[r];
            }
            out[row][col] = det3(&m) / det;
        }
    }
    Some(out)
}

fn sample_rgba(img: &RgbaImage, x: f64, y: f64) -> [f32; 4] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let px = |xx: i64, yy: i64| -> [f32; 4] {
        if xx < 0 || yy < 0 || xx >= w || yy >= h {
            return [0.0; 4];
        }
        let p = img.get_pixel(xx as u32, yy as u32);
        // Premultiplied, so transparent pixels do not bleed colour.
        let a = p[3] as f32 / 255.0;
        [p[0] as f32 * a, p[1] as f32 * a, p[2] as f32 * a, a]
    };
    let (p00, p10, p01, p11) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    let mut o = [0f32; 4];
    for c in 0..4 {
        o[c] = (p00[c] * (1.0 - fx) + p10[c] * fx) * (1.0 - fy)
            + (p01[c] * (1.0 - fx) + p11[c] * fx) * fy;
    }
    o
}

impl TemplateSet {
    /// Read `dir/masks.cfg` and every template image it names.
    pub fn load(dir: &Path) -> Result<TemplateSet, TemplateError> {
        let cfg = dir.join("masks.cfg");
        let text = std::fs::read_to_string(&cfg).map_err(|e| TemplateError::Read {
            path: cfg.clone(),
            message: e.to_string(),
        })?;
        let entries = parse_cfg(&text).map_err(|message| TemplateError::Config {
            path: cfg.clone(),
            message,
        })?;
        let mut templates = BTreeMap::new();
        for (name, file, anchors) in entries {
            // Paths are written relative to MaskTheFace's checkout
            // ("masks/templates/x.png"); look next to masks.cfg.
            let rel = Path::new(&file);
            let candidates = [
                dir.join(rel),
                dir.join("templates")
                    .join(rel.file_name().unwrap_or_default()),
            ];
            let Some(path) = candidates.iter().find(|p| p.is_file()) else {
                log::warn!(
                    "mask template {name}: {file} not found under {}",
                    dir.display()
                );
                continue;
            };
            let image = image::open(path)
                .map_err(|e| TemplateError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .to_rgba8();
            templates.insert(
                name.clone(),
                Template {
                    name,
                    image,
                    anchors,
                },
            );
        }
        Ok(TemplateSet { templates })
    }

    pub fn names(&self) -> Vec<&str> {
        self.templates.keys().map(String::as_str).collect()
    }

    /// Warp template `name` onto `face`.
    pub fn paint(&self, img: &mut RgbImage, face: &Face, name: &str) -> Result<(), TemplateError> {
        let t = self
            .templates
            .get(name)
            .ok_or_else(|| TemplateError::Unknown {
                name: name.to_string(),
                have: self.names().join(", "),
            })?;
        paint_template(img, face, t)
    }
}

/// Warp one template onto a face.
pub fn paint_template(img: &mut RgbImage, face: &Face, t: &Template) -> Result<(), TemplateError> {
    let ff = FaceFrame::new(&face.landmarks)?;
    let fa = face_anchors(&ff);
    let ta = t.anchors;
    let left = affine_lsq(&[fa[0], fa[1], fa[3], fa[4]], &[ta[0], ta[1], ta[3], ta[4]])
        .ok_or(AlignError::Degenerate)?;
    let right = affine_lsq(&[fa[1], fa[2], fa[4], fa[5]], &[ta[1], ta[2], ta[4], ta[5]])
        .ok_or(AlignError::Degenerate)?;
    let light = scene_light(img, &ff);
    let (w, h) = img.dimensions();
    let Some([x0, y0, x1, y1]) = ff.image_bounds(-1.6, -0.2, 1.6, 2.5, w, h) else {
        return Ok(());
    };
    let (b, e) = (fa[1], fa[4]);
    for y in y0..y1 {
        for x in x0..x1 {
            let p = apply(&ff.to_frame, [x as f32 + 0.5, y as f32 + 0.5]);
            // Which side of the nose line b-e.
            let cross = (e[0] - b[0]) * (p[1] - b[1]) - (e[1] - b[1]) * (p[0] - b[0]);
            let m = if cross > 0.0 { &left } else { &right };
            let q = apply(m, p);
            let s = sample_rgba(&t.image, q[0] as f64 - 0.5, q[1] as f64 - 0.5);
            let a = s[3];
            if a <= 0.0 {
                continue;
            }
            let px = img.get_pixel_mut(x, y);
            for c in 0..3 {
                let m = (s[c] * light).min(255.0 * a);
                px[c] = (px[c] as f32 * (1.0 - a) + m).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_masks_cfg() {
        let text = "[surgical]\ntemplate:   masks/templates/surgical.png\nmask_a:     21, 97\nmask_b: 307, 22\nmask_c: 600, 99\nmask_d: 25, 322\nmask_e: 295, 470\nmask_f: 600, 323\n\n[empty]\n\n[x]\ntemplate: y.png\nmask_a: 1, 2\n";
        let err = parse_cfg(text).unwrap_err();
        assert!(err.contains("mask_b"), "{err}");
        let ok = parse_cfg(&text[..text.find("[x]").unwrap()]).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, "surgical");
        assert_eq!(ok[0].2[4], [295.0, 470.0]);
        assert!(parse_cfg("[a]\nmask_a: 1\n").is_err());
    }

    #[test]
    fn affine_fit_is_exact_for_an_affine_map() {
        let src = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let dst: Vec<[f32; 2]> = src
            .iter()
            .map(|p| [2.0 * p[0] + 0.5 * p[1] + 3.0, -p[0] + p[1] * 4.0])
            .collect();
        let m = affine_lsq(&src, &dst).unwrap();
        let q = apply(&m, [0.5, 0.25]);
        assert!(
            (q[0] - 4.125).abs() < 1e-5 && (q[1] - 0.5).abs() < 1e-5,
            "{q:?}"
        );
    }
}
