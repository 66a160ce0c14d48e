//! Operating thresholds for the daemon, chosen on people that appear in no
//! pair of pairs.txt (so the reported pair figures never saw them), and the
//! `models/thresholds.toml` they are written to.

use std::fmt::Write as _;

/// One calibrated threshold.
#[derive(Debug, Clone)]
pub struct Calibrated {
    pub threshold: f32,
    pub far_target: f64,
    /// FAR achieved on the calibration impostors.
    pub far: f64,
    /// FRR on the calibration genuine pairs.
    pub frr: f64,
    pub genuine: usize,
    pub impostors: usize,
}

/// `models/thresholds.toml` text: one table per embedder bundle, read by
/// the models pipeline's manifest step into `[thresholds]`.
pub fn thresholds_toml(
    bundle: &str,
    sha256: &str,
    unmasked: &Calibrated,
    masked: &Calibrated,
    images: usize,
    people: usize,
    renderer: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Operating thresholds (cosine) per embedder bundle, written by `facegate eval lfw`\n\
         # (issue 6) and copied by models/build's manifest step into each bundle's [thresholds].\n\
         # Chosen at the target FAR per attempt on LFW images that are not among the pairs.txt images.\n"
    );
    let _ = writeln!(s, "[{bundle:?}]");
    let _ = writeln!(s, "status = \"calibrated\"");
    // Rounded up, so the rounding never lowers a threshold below the
    // calibrated FAR bound.
    let up = |t: f32| (t as f64 * 1e4).ceil() / 1e4;
    let _ = writeln!(s, "unmasked = {:.4}", up(unmasked.threshold));
    let _ = writeln!(s, "masked = {:.4}", up(masked.threshold));
    let _ = writeln!(s, "target_far = {:e}", unmasked.far_target);
    let _ = writeln!(s, "frr_unmasked = {:.4}", unmasked.frr);
    let _ = writeln!(s, "frr_masked = {:.4}", masked.frr);
    let _ = writeln!(s, "model_sha256 = {sha256:?}");
    let _ = writeln!(s, "pipeline_version = {}", super::PIPELINE_VERSION);
    let _ = writeln!(
        s,
        "data = \"LFW deep-funneled, {images} images of {people} people not among the pairs.txt images: unmasked {}/{} genuine/impostor pairs; masked probes ({renderer}) vs unmasked enrolment {}/{}\"",
        unmasked.genuine, unmasked.impostors, masked.genuine, masked.impostors
    );
    let _ = writeln!(
        s,
        "note = \"unmasked: probe without a mask (mask presence); masked: probe with a mask. FRR per attempt on the calibration images.\""
    );
    s
}
