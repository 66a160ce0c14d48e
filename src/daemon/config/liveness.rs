//! `[liveness]`: which presentation-attack checks a decision needs, per
//! service, and the IR check's calibration (issue 15 §3; docs/LIVENESS.md).

use serde::Deserialize;

use crate::face::liveness::{Geometry, IrParams};

use super::ConfigError;

/// What a service's decisions need besides a matching face.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Nothing: a photo or a screen replay of an enrolled face is accepted.
    #[default]
    Off,
    /// A live-looking face in the IR camera's frame at the same place and
    /// time (`[camera.ir]` must be configured).
    Ir,
    /// The RGB anti-spoofing model's score at least `[liveness.rgb]
    /// min_score` (measured weak: docs/LIVENESS.md).
    Rgb,
    /// Both checks.
    #[serde(rename = "ir+rgb")]
    IrRgb,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::Ir => "ir",
            Policy::Rgb => "rgb",
            Policy::IrRgb => "ir+rgb",
        }
    }

    /// Whether the IR check runs.
    pub fn ir(self) -> bool {
        matches!(self, Policy::Ir | Policy::IrRgb)
    }

    /// Whether the RGB anti-spoofing check runs.
    pub fn rgb(self) -> bool {
        matches!(self, Policy::Rgb | Policy::IrRgb)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Liveness {
    /// Verify requests: the PAM helper and `facegate verify`.
    pub pam: Policy,
    /// Door mode (events) and identify requests.
    pub door: Policy,
    pub ir: IrCheck,
    pub rgb: RgbCheck,
}

/// The RGB anti-spoofing check: which bundle, and the score it needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RgbCheck {
    /// An `antispoof` bundle in the models directory (signed like the others).
    pub bundle: String,
    /// The score (0–1, higher = real) below which a face is refused.
    pub min_score: f32,
}

impl Default for RgbCheck {
    fn default() -> Self {
        RgbCheck {
            bundle: crate::bundle::DEFAULT_ANTISPOOF.into(),
            min_score: 0.5,
        }
    }
}

/// The IR check: geometry (`facegate calibrate-ir` measures it) and limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IrCheck {
    /// Colour pixel → IR pixel, per axis: `ir = scale · rgb + offset`.
    pub scale: [f32; 2],
    pub offset: [f32; 2],
    /// The IR frame used is the one captured closest in time to the colour
    /// frame; none within this many ms fails the check.
    pub max_skew_ms: u64,
    /// Overlap (IoU) the IR face needs with the mapped colour face.
    pub min_iou: f32,
    /// Mean luma (0–255) of the IR face region below which it is a screen.
    pub min_mean: f32,
    /// Luma standard deviation below which the region is too flat for skin.
    pub min_contrast: f32,
}

impl Default for IrCheck {
    fn default() -> Self {
        let g = Geometry::default();
        let p = IrParams::default();
        IrCheck {
            scale: g.scale,
            offset: g.offset,
            max_skew_ms: 100,
            min_iou: p.min_iou,
            min_mean: p.min_mean,
            min_contrast: p.min_contrast,
        }
    }
}

impl IrCheck {
    pub fn geometry(&self) -> Geometry {
        Geometry {
            scale: self.scale,
            offset: self.offset,
        }
    }

    pub fn params(&self) -> IrParams {
        IrParams {
            min_iou: self.min_iou,
            min_mean: self.min_mean,
            min_contrast: self.min_contrast,
        }
    }
}

impl Liveness {
    /// Checked with the rest of the config; `has_ir` = `[camera.ir]` is set.
    pub fn validate(&self, has_ir: bool) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (k, p) in [("pam", self.pam), ("door", self.door)] {
            if p.ir() && !has_ir {
                return bad(format!(
                    "liveness.{k} = {:?} needs an IR camera: configure [camera.ir] (docs/LIVENESS.md)",
                    p.name()
                ));
            }
        }
        let rgb = &self.rgb;
        if rgb.bundle.is_empty() || rgb.bundle.contains('/') || rgb.bundle.starts_with('.') {
            return bad(format!(
                "liveness.rgb.bundle {:?} is not a bundle name",
                rgb.bundle
            ));
        }
        if !(rgb.min_score > 0.0 && rgb.min_score < 1.0) {
            return bad(format!(
                "liveness.rgb.min_score {} is not in (0, 1)",
                rgb.min_score
            ));
        }
        let ir = &self.ir;
        for (k, v) in [("scale[0]", ir.scale[0]), ("scale[1]", ir.scale[1])] {
            if !(v.is_finite() && v.abs() >= 0.05 && v.abs() <= 20.0) {
                return bad(format!(
                    "liveness.ir.{k} = {v} is not a scale between 0.05 and 20 in size"
                ));
            }
        }
        for (k, v) in [("offset[0]", ir.offset[0]), ("offset[1]", ir.offset[1])] {
            if !(v.is_finite() && v.abs() <= 10_000.0) {
                return bad(format!("liveness.ir.{k} = {v} is not an offset in pixels"));
            }
        }
        if !(1..=2000).contains(&ir.max_skew_ms) {
            return bad(format!(
                "liveness.ir.max_skew_ms {} is not in 1..=2000",
                ir.max_skew_ms
            ));
        }
        if !(ir.min_iou > 0.0 && ir.min_iou <= 1.0) {
            return bad(format!(
                "liveness.ir.min_iou {} is not in (0, 1]",
                ir.min_iou
            ));
        }
        for (k, v) in [("min_mean", ir.min_mean), ("min_contrast", ir.min_contrast)] {
            if !(0.0..=255.0).contains(&v) {
                return bad(format!("liveness.ir.{k} {v} is not in [0, 255]"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    const IR_CAMERA: &str = "[camera.ir]\nkind = \"replay\"\nreplay = [\"/tmp/ir\"]\n";

    #[test]
    fn off_by_default_and_ir_needs_an_ir_camera() {
        let c = parse("").unwrap();
        assert_eq!(
            (c.liveness.pam, c.liveness.door),
            (Policy::Off, Policy::Off)
        );
        assert_eq!(c.liveness.ir.geometry(), Geometry::default());
        let e = parse("[liveness]\npam = \"ir\"\n").unwrap_err().to_string();
        assert!(
            e.contains("liveness.pam = \"ir\" needs an IR camera"),
            "{e}"
        );
        let e = parse("[liveness]\ndoor = \"ir\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("liveness.door"), "{e}");
        let c = parse(&format!(
            "[liveness]\npam = \"ir\"\ndoor = \"off\"\n[liveness.ir]\nscale = [0.5, 0.5]\noffset = [12.0, -3.5]\n{IR_CAMERA}"
        ))
        .unwrap();
        assert_eq!(c.liveness.pam, Policy::Ir);
        assert_eq!(
            c.liveness.ir.geometry(),
            Geometry {
                scale: [0.5, 0.5],
                offset: [12.0, -3.5]
            }
        );
        assert!(parse("[liveness]\npam = \"face\"\n").is_err());
    }

    #[test]
    fn rgb_needs_no_camera_and_ir_plus_rgb_needs_the_ir_one() {
        let c = parse("[liveness]\ndoor = \"rgb\"\n").unwrap();
        assert_eq!(c.liveness.door, Policy::Rgb);
        assert!(c.liveness.door.rgb() && !c.liveness.door.ir());
        assert_eq!(c.liveness.rgb, RgbCheck::default());
        let e = parse("[liveness]\npam = \"ir+rgb\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("liveness.pam = \"ir+rgb\" needs an IR camera"),
            "{e}"
        );
        let c = parse(&format!(
            "[liveness]\npam = \"ir+rgb\"\n[liveness.rgb]\nbundle = \"mine\"\nmin_score = 0.8\n{IR_CAMERA}"
        ))
        .unwrap();
        assert!(c.liveness.pam.ir() && c.liveness.pam.rgb());
        assert_eq!(
            (c.liveness.rgb.bundle.as_str(), c.liveness.rgb.min_score),
            ("mine", 0.8)
        );
        for (line, key) in [
            ("min_score = 1.0", "min_score"),
            ("min_score = 0.0", "min_score"),
            ("bundle = \"../x\"", "bundle"),
            ("bundle = \"\"", "bundle"),
        ] {
            let e = parse(&format!("[liveness.rgb]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("liveness.rgb.{key}")), "{line}: {e}");
        }
    }

    #[test]
    fn bad_ir_limits_are_refused_with_their_key() {
        for (line, key) in [
            ("scale = [0.0, 1.0]", "scale[0]"),
            ("scale = [1.0, 100.0]", "scale[1]"),
            ("offset = [1e9, 0.0]", "offset[0]"),
            ("max_skew_ms = 0", "max_skew_ms"),
            ("min_iou = 0.0", "min_iou"),
            ("min_iou = 1.5", "min_iou"),
            ("min_mean = 300.0", "min_mean"),
            ("min_contrast = -1.0", "min_contrast"),
        ] {
            let e = parse(&format!("[liveness.ir]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("liveness.ir.{key}")), "{line}: {e}");
        }
        assert!(parse("[liveness.ir]\nunknown = 1\n").is_err());
    }
}
