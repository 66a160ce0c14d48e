//! Operating thresholds for the daemon, chosen on people that appear in no
//! pair of pairs.txt (so the reported pair figures never saw them), and the
//! `models/thresholds.toml` they are written to.

use std::fmt::Write as _;

use crate::ident::IdentTable;

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
/// the models pipeline's manifest step into `[thresholds]`. `identify`:
/// the identification table (issue 15) and the per-person impostor
/// comparisons it was measured on.
#[allow(clippy::too_many_arguments)]
pub fn thresholds_toml(
    bundle: &str,
    sha256: &str,
    unmasked: &Calibrated,
    masked: &Calibrated,
    images: usize,
    people: usize,
    renderer: &str,
    identify: Option<(&IdentTable, usize)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Operating thresholds (cosine) per embedder bundle, written by `facegate eval lfw`\n\
         # (issue 6) and copied by models/build's manifest step into each bundle's [thresholds].\n\
         # Chosen at the target FAR per attempt on LFW images that are not among the pairs.txt images.\n\
         # identify_far / identify_unmasked / identify_masked (issue 15; optional, all or none): the\n\
         # per-person impostor tail the daemon scales identification thresholds with (src/ident.rs).\n"
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
    if let Some((t, comparisons)) = identify {
        s.push_str(&identify_toml(t, comparisons, renderer));
    }
    s
}

/// The identification keys of a bundle's table (issue 15, [`crate::ident`]):
/// FAR levels and per level the unmasked and masked probe thresholds, ten
/// values (one decade) per line.
pub fn identify_toml(t: &IdentTable, comparisons: usize, renderer: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Identification (issue 15): per-person impostor FAR levels (10 per decade, down to the\n\
         # last one with >= {} calibration impostors above it) and the threshold reaching each;\n\
         # the daemon applies the level for its number of enrolled people and [identify] fpir.",
        crate::ident::MIN_TAIL_IMPOSTORS
    );
    let rows = |v: Vec<String>| {
        let lines: Vec<String> = v
            .chunks(10)
            .map(|c| format!("  {},", c.join(", ")))
            .collect();
        format!("[\n{}\n]", lines.join("\n"))
    };
    let _ = writeln!(
        s,
        "identify_far = {}",
        rows(t.far.iter().map(|f| format!("{f:e}")).collect())
    );
    for (k, v) in [("unmasked", &t.unmasked), ("masked", &t.masked)] {
        let _ = writeln!(
            s,
            "identify_{k} = {}",
            rows(v.iter().map(|x| format!("{x:.4}")).collect())
        );
    }
    let _ = writeln!(s, "identify_comparisons = {comparisons}");
    let _ = writeln!(
        s,
        "identify_note = \"per-person impostors: every calibration probe against every other person, best of that person's unmasked images; masked probes: {renderer}\""
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_keys_read_back_as_a_manifest_table() {
        let far: Vec<f64> = crate::ident::levels(1000)
            .iter()
            .map(|f| (f * 1e4).ceil() / 1e4)
            .collect();
        assert_eq!(far.len(), 14); // 1e-1 … 5.0e-3 (≥ 5 of 1000)
        let t = IdentTable {
            periocular: None,
            unmasked: (0..14).map(|k| 0.3 + 0.01 * k as f32).collect(),
            masked: (0..14).map(|k| 0.25 + 0.01 * k as f32).collect(),
            far,
        };
        let c = Calibrated {
            threshold: 0.625,
            far_target: 1e-4,
            far: 1e-4,
            frr: 0.1,
            genuine: 10,
            impostors: 1000,
        };
        let text = thresholds_toml(
            "m",
            &"0".repeat(64),
            &c,
            &c,
            5,
            3,
            "procedural",
            Some((&t, 1000)),
        );
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let table: crate::bundle::Thresholds = doc["m"].clone().try_into().unwrap();
        assert_eq!(table.unmasked, Some(0.625));
        let back = table.identify().unwrap();
        back.validate().unwrap();
        assert_eq!(back.far, t.far);
        for (a, b) in back.unmasked.iter().zip(&t.unmasked) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(back.masked.len(), 14);
        assert_eq!(doc["m"]["identify_comparisons"].as_integer(), Some(1000));
        // Without the table: the keys of before issue 15 only.
        let old = thresholds_toml("m", &"0".repeat(64), &c, &c, 5, 3, "procedural", None);
        let doc: toml::Table = toml::from_str(&old).unwrap();
        let table: crate::bundle::Thresholds = doc["m"].clone().try_into().unwrap();
        assert!(table.identify().is_none() && table.identify_far.is_none());
    }
}
