//! The optional `[presence]` section of an embedder manifest: a mask
//! presence classifier trained on this very model's embeddings
//! (issue 14 §6; `models/facegate_train/presence.py`, written by
//! `models/build --lfw`). Without it the daemon keeps the skin-share rule
//! ([`crate::face::presence`]).
//!
//! A section that does not fit its manifest (another model's sha256, a
//! weight count other than the output dimension, non-finite numbers, an
//! unknown kind) makes the whole manifest invalid: the manifest is one
//! signed unit, so a mismatch is a broken pipeline or a hand edit, never
//! something to paper over.

use serde::Deserialize;

/// Logistic regression on the L2-normalised whole-face embedding:
/// `p = sigmoid(weights · e + bias)`, masked when `p >= threshold`.
pub const KIND_LOGISTIC_EMBEDDING: &str = "logistic-embedding";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PresenceSection {
    pub kind: String,
    /// The model whose embeddings it was trained on (must be this bundle's).
    pub model_sha256: String,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// Decision threshold on the probability, in (0, 1).
    pub threshold: f32,
    /// What it was trained on (for reports).
    #[serde(default)]
    pub data: Option<String>,
    /// Held-out (out-of-fold) shares of bare faces and of procedurally
    /// masked faces called masked at `threshold`, as the trainer measured.
    #[serde(default)]
    pub holdout_bare_masked: Option<f32>,
    #[serde(default)]
    pub holdout_masked_masked: Option<f32>,
}

impl PresenceSection {
    /// Check the section against its manifest's output dimension and model.
    pub fn validate(&self, dim: usize, model_sha256: &str) -> Result<(), String> {
        if self.kind != KIND_LOGISTIC_EMBEDDING {
            return Err(format!(
                "presence.kind {:?} is not supported ({KIND_LOGISTIC_EMBEDDING:?})",
                self.kind
            ));
        }
        if !self.model_sha256.eq_ignore_ascii_case(model_sha256) {
            return Err(format!(
                "presence.model_sha256 {} is not this bundle's model ({model_sha256}): the classifier was trained on another model (rebuild with `models/build --lfw`)",
                self.model_sha256
            ));
        }
        if self.weights.len() != dim {
            return Err(format!(
                "presence.weights has {} values, the embedding has {dim}",
                self.weights.len()
            ));
        }
        if self.weights.iter().any(|w| !w.is_finite()) || !self.bias.is_finite() {
            return Err("presence.weights/bias must be finite".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!(
                "presence.threshold {} is not a probability in (0, 1)",
                self.threshold
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::bundle::Manifest;

    const SHA: &str = "8800557872b20ec2fa4eea67f5bf51d523716eebb91d6ceed7a7badf1d4e9d0f";

    fn manifest(presence: &str) -> String {
        format!(
            r#"
schema = 1
name = "tiny"
kind = "embedder"
version = "1"
[model]
file = "model.onnx"
sha256 = "{SHA}"
bytes = 10
format = "onnx"
precision = "fp32"
[input]
name = "input"
layout = "NHWC"
colour = "RGB"
shape = [-1, 112, 112, 3]
mean = [127.5, 127.5, 127.5]
std = [128.0, 128.0, 128.0]
[output]
name = "emb"
dim = 3
l2_normalised = true
[align]
size = 112
template = [[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]]
border = "clamp"
{presence}"#
        )
    }

    fn section(extra: &str) -> String {
        format!(
            "[presence]\nkind = \"logistic-embedding\"\nmodel_sha256 = \"{SHA}\"\nweights = [1.0, -2.0, 0.5]\nbias = -0.25\nthreshold = 0.8\n{extra}"
        )
    }

    #[test]
    fn a_manifest_without_presence_has_none_and_a_good_one_parses() {
        assert!(Manifest::parse(&manifest("")).unwrap().presence.is_none());
        let m = Manifest::parse(&manifest(&section(
            "data = \"LFW\"\nholdout_bare_masked = 0.02",
        )))
        .unwrap();
        let p = m.presence.unwrap();
        assert_eq!(p.weights, vec![1.0, -2.0, 0.5]);
        assert_eq!((p.bias, p.threshold), (-0.25, 0.8));
        assert_eq!(p.data.as_deref(), Some("LFW"));
        assert_eq!(p.holdout_bare_masked, Some(0.02));
    }

    #[test]
    fn a_section_that_does_not_fit_its_manifest_is_refused() {
        let good = section("");
        let cases = [
            (
                good.replace("[1.0, -2.0, 0.5]", "[1.0, -2.0]"),
                "2 values, the embedding has 3",
            ),
            (
                good.replace(SHA, &"ab".repeat(32)),
                "not this bundle's model",
            ),
            (good.replace("logistic-embedding", "cnn"), "not supported"),
            (good.replace("threshold = 0.8", "threshold = 1.0"), "(0, 1)"),
            (good.replace("threshold = 0.8", "threshold = nan"), "(0, 1)"),
            (good.replace("bias = -0.25", "bias = inf"), "finite"),
            (good.replace("bias = -0.25\n", ""), "bias"),
            (format!("{good}colour = \"red\"\n"), "colour"),
            (good.replace("[1.0, -2.0, 0.5]", "\"heavy\""), "sequence"),
        ];
        for (sec, needle) in cases {
            let err = Manifest::parse(&manifest(&sec)).unwrap_err();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
