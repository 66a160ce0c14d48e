//! Open-set identification thresholds for the gallery's size (issue 15 §1).
//!
//! A 1:1 threshold bounds the false-accept rate of *one* comparison. An
//! identification compares the probe with every enrolled person and accepts
//! the best one, so for a probe of somebody never enrolled the false
//! positive identification rate is
//!
//! ```text
//! FPIR(t, N) = 1 − P(max of N impostor scores < t) ≈ 1 − (1 − FAR(t))^N
//! ```
//!
//! (independent impostors), about N·FAR(t) while that is small. To hold a
//! target FPIR at N enrolled people, each comparison must reach
//! `FAR(t) ≤ 1 − (1 − fpir)^(1/N)`.
//!
//! **N counts people, not templates.** The scan keeps the best template per
//! user and names a user: the unit of a false identification is a person.
//! FAR(t) is therefore calibrated *per person* — the share of (probe, other
//! person) comparisons whose best score over that person's enrolment
//! templates reaches t (`facegate eval lfw`: up to 6 unmasked images per
//! person). A person's templates (frames of one enrolment, a few photos) are
//! strongly correlated, so counting them as independent comparisons would
//! overstate N several-fold and refuse galleries the model can serve.
//!
//! The calibration stores a compact tail of that impostor distribution per
//! probe condition ([`IdentTable`]): for FAR levels on a log grid (10 per
//! decade, from 1e-1 down to the smallest level the calibration can measure)
//! the lowest threshold whose measured FAR is at most that level. The daemon
//! takes the largest level not above the FAR it needs (so the rounding only
//! ever makes the threshold stricter) and refuses when the needed FAR is
//! below the last level: the calibration set cannot vouch for it. With
//! ~6.4 M per-person impostor comparisons and at least
//! [`MIN_TAIL_IMPOSTORS`] impostors above the threshold for a level to count
//! as measured, the tail stops near 8e-7, which caps N at about
//! fpir / 8e-7 (≈ 1,300 people at FPIR 1e-3).

use std::fmt;

/// A FAR level counts as measured when at least this many calibration
/// impostors may score at or above its threshold (relative error of the
/// level ≈ 1/√5 ≈ 45 %; below it, a level is a guess).
pub const MIN_TAIL_IMPOSTORS: usize = 5;

/// FAR levels per decade of the tail.
pub const LEVELS_PER_DECADE: u32 = 10;

/// The highest FAR level of the tail (FPIR targets above it are refused by
/// the config validation).
pub const TOP_LEVEL: f64 = 1e-1;

/// The per-person impostor tail of both probe conditions, as stored in a
/// manifest's `[thresholds]` (`identify_far`, `identify_unmasked`,
/// `identify_masked`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentTable {
    /// FAR levels, strictly decreasing, in (0, 1).
    pub far: Vec<f64>,
    /// Per level, the threshold an unmasked probe needs (non-decreasing).
    pub unmasked: Vec<f32>,
    /// Per level, the threshold a masked probe needs (non-decreasing).
    pub masked: Vec<f32>,
    /// Per level, the threshold a masked probe compared as a periocular crop
    /// needs (`identify_periocular`; None: not calibrated, such probes are
    /// never identified).
    pub periocular: Option<Vec<f32>>,
}

/// Why no identification threshold can be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdentError {
    /// The gallery is too big for the model at this FPIR.
    #[error("{people} people enrolled: FPIR {fpir:e} needs a per-person FAR of {needed:.2e}, below the {lowest:.2e} the calibration can vouch for (at most {max_people} people at this FPIR)")]
    TooLarge {
        people: usize,
        fpir: f64,
        needed: f64,
        lowest: f64,
        max_people: usize,
    },
    #[error("fpir {0} is not in (0, {TOP_LEVEL}]")]
    BadFpir(f64),
}

/// The per-comparison FAR that keeps FPIR at `fpir` against `people`
/// independent impostors: 1 − (1 − fpir)^(1/N), computed without
/// cancellation. `people == 0` needs nothing (1.0).
pub fn far_needed(people: usize, fpir: f64) -> f64 {
    if people == 0 {
        return 1.0;
    }
    // 1 − exp(ln(1 − fpir) / N)
    -((-fpir).ln_1p() / people as f64).exp_m1()
}

/// FPIR predicted for `people` independent impostor comparisons of
/// per-comparison FAR `far`: 1 − (1 − far)^N.
pub fn predicted_fpir(far: f64, people: usize) -> f64 {
    -((-far).ln_1p() * people as f64).exp_m1()
}

/// The largest gallery whose needed FAR at `fpir` is still at least
/// `lowest` (the last measured level).
pub fn max_people(fpir: f64, lowest: f64) -> usize {
    if !(lowest > 0.0 && lowest < 1.0) {
        return 0;
    }
    let est = ((-fpir).ln_1p() / (-lowest).ln_1p()).floor();
    if !est.is_finite() || est < 0.0 {
        return 0;
    }
    let mut n = est as usize;
    // Float rounding of the estimate: settle on the exact boundary.
    while n > 0 && far_needed(n, fpir) < lowest {
        n -= 1;
    }
    while far_needed(n + 1, fpir) >= lowest {
        n += 1;
    }
    n
}

/// The FAR levels of the tail: 10^(−k/10) from [`TOP_LEVEL`] down, while at
/// least [`MIN_TAIL_IMPOSTORS`] of `impostors` comparisons fit under the level.
pub fn levels(impostors: usize) -> Vec<f64> {
    let top = (-TOP_LEVEL.log10() * LEVELS_PER_DECADE as f64).round() as u32;
    (top..)
        .map(|k| 10f64.powf(-(k as f64) / LEVELS_PER_DECADE as f64))
        .take_while(|&f| (f * impostors as f64).floor() as usize >= MIN_TAIL_IMPOSTORS)
        .collect()
}

impl IdentTable {
    /// Check the table's shape: one threshold per level in each condition,
    /// levels strictly decreasing in (0, 1), thresholds cosines that never
    /// fall as the level falls.
    pub fn validate(&self) -> Result<(), String> {
        if self.far.is_empty() {
            return Err("identify_far is empty".into());
        }
        if self.unmasked.len() != self.far.len() || self.masked.len() != self.far.len() {
            return Err(format!(
                "identify_far has {} levels but identify_unmasked {} and identify_masked {} thresholds",
                self.far.len(),
                self.unmasked.len(),
                self.masked.len()
            ));
        }
        if self.far.iter().any(|f| !(*f > 0.0 && *f < 1.0)) {
            return Err("identify_far levels must be in (0, 1)".into());
        }
        if self.far.windows(2).any(|w| w[1] >= w[0]) {
            return Err("identify_far levels must decrease strictly".into());
        }
        if let Some(p) = &self.periocular {
            if p.len() != self.far.len() {
                return Err(format!(
                    "identify_far has {} levels but identify_periocular {} thresholds",
                    self.far.len(),
                    p.len()
                ));
            }
        }
        let periocular = self.periocular.as_ref().map(|p| ("periocular", p));
        for (k, t) in [("unmasked", &self.unmasked), ("masked", &self.masked)]
            .into_iter()
            .chain(periocular)
        {
            if t.iter().any(|v| !(-1.0..=1.0).contains(v)) {
                return Err(format!("identify_{k} holds a value that is not a cosine"));
            }
            if t.windows(2).any(|w| w[1] < w[0]) {
                return Err(format!(
                    "identify_{k} thresholds must not fall as the FAR level falls"
                ));
            }
        }
        Ok(())
    }

    /// The lowest FAR level the calibration measured.
    pub fn lowest(&self) -> f64 {
        self.far.last().copied().unwrap_or(1.0)
    }

    /// The largest gallery this table serves at `fpir`.
    pub fn max_people(&self, fpir: f64) -> usize {
        max_people(fpir, self.lowest())
    }

    /// The threshold for a probe (`masked` or not) against `people`
    /// enrolled people at target `fpir`: the threshold of the largest FAR
    /// level not above [`far_needed`]. With nobody enrolled, the first level
    /// (nothing can be misidentified anyway).
    pub fn threshold(&self, masked: bool, people: usize, fpir: f64) -> Result<f32, IdentError> {
        self.lookup(
            if masked { &self.masked } else { &self.unmasked },
            people,
            fpir,
        )
    }

    fn lookup(&self, t: &[f32], people: usize, fpir: f64) -> Result<f32, IdentError> {
        if !(fpir > 0.0 && fpir <= TOP_LEVEL) {
            return Err(IdentError::BadFpir(fpir));
        }
        let needed = far_needed(people, fpir);
        // Levels decrease: the first one at or below `needed` (the slack
        // only absorbs float noise of 10^(-k/10), far below a level's step).
        match self.far.iter().position(|&f| f <= needed * (1.0 + 1e-9)) {
            Some(k) if k < t.len() => Ok(t[k]),
            _ => Err(IdentError::TooLarge {
                people,
                fpir,
                needed,
                lowest: self.lowest(),
                max_people: self.max_people(fpir),
            }),
        }
    }

    /// Both conditions' thresholds for `people` at `fpir`.
    pub fn thresholds(
        &self,
        people: usize,
        fpir: f64,
    ) -> Result<crate::engine::Thresholds, IdentError> {
        Ok(crate::engine::Thresholds {
            unmasked: self.threshold(false, people, fpir)?,
            masked: self.threshold(true, people, fpir)?,
            periocular: match &self.periocular {
                Some(p) => Some(self.lookup(p, people, fpir)?),
                None => None,
            },
        })
    }
}

impl fmt::Display for IdentTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} FAR levels, {:e} … {:.2e}",
            self.far.len(),
            self.far.first().copied().unwrap_or(0.0),
            self.lowest()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> IdentTable {
        // FAR(t) = 10^(-10 t) on [0.1, 0.6]: level 10^(-k/10) ↔ t = k/100.
        let far = levels(10_000_000); // down to ≥ 5 impostors of 1e7: 5e-7
        let unmasked: Vec<f32> = far.iter().map(|f| (-f.log10() / 10.0) as f32).collect();
        let masked: Vec<f32> = unmasked.iter().map(|t| t + 0.05).collect();
        IdentTable {
            periocular: None,
            far,
            unmasked,
            masked,
        }
    }

    #[test]
    fn far_needed_inverts_the_prediction() {
        for &(n, fpir) in &[(1usize, 1e-3), (100, 1e-2), (1000, 1e-3), (123_456, 1e-3)] {
            let f = far_needed(n, fpir);
            assert!((predicted_fpir(f, n) - fpir).abs() < 1e-12 * fpir.max(1.0));
            // ≈ fpir / N for small rates, and never more than it.
            assert!(f <= fpir / n as f64 * 1.01 && f >= fpir / n as f64 * 0.99);
        }
        assert!((far_needed(1, 1e-3) - 1e-3).abs() < 1e-15);
        assert_eq!(far_needed(0, 1e-3), 1.0);
        // The N-fold growth the issue describes.
        let p = predicted_fpir(1e-4, 10_000);
        assert!((p - 0.632).abs() < 1e-3, "{p}");
    }

    #[test]
    fn levels_stop_where_the_calibration_cannot_measure() {
        let l = levels(4_916_096);
        assert!((l[0] - 0.1).abs() < 1e-15);
        let last = *l.last().unwrap();
        assert!((last * 4_916_096.0).floor() >= 5.0);
        // The next level would hold fewer than 5 impostors.
        assert!((last / 10f64.powf(0.1) * 4_916_096.0).floor() < 5.0);
        assert!(last > 1e-6 && last < 1.3e-6, "{last}");
        assert_eq!(l.len(), 50); // 1e-1 … 1.26e-6
        assert!(levels(40).is_empty()); // 0.1 × 40 = 4 < 5
    }

    #[test]
    fn threshold_grows_with_the_gallery() {
        let t = table();
        t.validate().unwrap();
        let at = |n| t.threshold(false, n, 1e-3).unwrap();
        // N = 1: FAR 1e-3 → t = 0.30; N = 10: 1e-4 → 0.40; N = 1000: 1e-6 → 0.60.
        assert!((at(1) - 0.30).abs() < 1e-6, "{}", at(1));
        assert!((at(10) - 0.40).abs() < 1e-6, "{}", at(10));
        assert!((at(1000) - 0.60).abs() < 1e-6, "{}", at(1000));
        // N = 2 needs 5.0e-4: the level 5.01e-4 is above it, so 3.98e-4 (t 0.34).
        assert!((at(2) - 0.34).abs() < 1e-6, "{}", at(2));
        assert!((t.threshold(true, 10, 1e-3).unwrap() - 0.45).abs() < 1e-6);
        let mut prev = f32::NEG_INFINITY;
        for n in [1, 2, 5, 10, 50, 100, 500, 1000] {
            assert!(at(n) >= prev);
            prev = at(n);
        }
        // A looser target allows a lower threshold.
        assert!(t.threshold(false, 100, 1e-2).unwrap() < at(100));
    }

    #[test]
    fn the_chosen_level_never_exceeds_the_target() {
        let t = table();
        for n in 1..=t.max_people(1e-3) {
            let th = t.threshold(false, n, 1e-3).unwrap();
            let far = 10f64.powf(-10.0 * th as f64);
            assert!(
                predicted_fpir(far, n) <= 1e-3 * (1.0 + 1e-5),
                "n {n}: t {th}, FPIR {}",
                predicted_fpir(far, n)
            );
        }
    }

    #[test]
    fn too_large_a_gallery_is_refused() {
        let t = table();
        let max = t.max_people(1e-3);
        // Lowest level ≈ 5.01e-7 → N ≤ 1e-3 / 5.01e-7 ≈ 1996.
        assert!((1990..=2000).contains(&max), "{max}");
        assert!(t.threshold(false, max, 1e-3).is_ok());
        match t.threshold(false, max + 1, 1e-3) {
            Err(IdentError::TooLarge {
                people, max_people, ..
            }) => assert_eq!((people, max_people), (max + 1, max)),
            other => panic!("{other:?}"),
        }
        // A looser target serves more people.
        assert!(t.max_people(1e-2) > 9 * max);
        assert!(matches!(
            t.threshold(false, 1, 0.5),
            Err(IdentError::BadFpir(_))
        ));
        assert!(matches!(
            t.threshold(false, 1, 0.0),
            Err(IdentError::BadFpir(_))
        ));
    }

    #[test]
    fn empty_gallery_takes_the_first_level() {
        let t = table();
        assert_eq!(t.threshold(false, 0, 1e-3).unwrap(), t.unmasked[0]);
    }

    #[test]
    fn validation_rejects_malformed_tables() {
        let ok = table();
        let mut a = ok.clone();
        a.masked.pop();
        assert!(a.validate().unwrap_err().contains("levels"));
        let mut b = ok.clone();
        b.far.swap(0, 1);
        assert!(b.validate().unwrap_err().contains("decrease"));
        let mut c = ok.clone();
        c.unmasked.swap(2, 3);
        assert!(c.validate().unwrap_err().contains("fall"));
        let mut d = ok.clone();
        d.masked[0] = 1.5;
        assert!(d.validate().unwrap_err().contains("cosine"));
        let mut e = ok;
        e.far[0] = 1.0;
        assert!(e.validate().unwrap_err().contains("(0, 1)"));
        let empty = IdentTable {
            periocular: None,
            far: vec![],
            unmasked: vec![],
            masked: vec![],
        };
        assert!(empty.validate().is_err());
    }
}
