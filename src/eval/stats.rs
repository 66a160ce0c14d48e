//! Verification metrics. Scores are cosines (higher = more alike); a pair
//! is accepted when `score >= threshold`. Failures carry
//! [`super::extract::FAIL_SCORE`], below every cosine.

/// Accuracy of labelled scores at threshold `t`.
pub fn accuracy(s: &[(f32, bool)], t: f32) -> f64 {
    s.iter().filter(|(c, same)| (*c >= t) == *same).count() as f64 / s.len().max(1) as f64
}

/// The threshold maximising accuracy on `s` (midpoint between adjacent
/// distinct scores), by one sweep over the sorted scores.
pub fn best_threshold(s: &[(f32, bool)]) -> f32 {
    let mut v: Vec<(f32, bool)> = s.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Threshold below everything: all accepted → correct = #genuine.
    let mut correct = v.iter().filter(|p| p.1).count() as i64;
    let mut best = (correct, v.first().map_or(0.0, |p| p.0 - 1e-3));
    let mut i = 0;
    while i < v.len() {
        let x = v[i].0;
        // Move every pair scoring x below the threshold.
        while i < v.len() && v[i].0 == x {
            correct += if v[i].1 { -1 } else { 1 };
            i += 1;
        }
        let t = if i < v.len() {
            (x + v[i].0) / 2.0
        } else {
            x + 1e-3
        };
        if correct > best.0 {
            best = (correct, t);
        }
    }
    best.1
}

/// LFW 10-fold: for each fold, the threshold from the other folds, the
/// accuracy on this one. Returns (mean, standard deviation, mean threshold).
pub fn ten_fold(scores: &[(f32, bool, usize)]) -> (f64, f64, f32) {
    let folds = scores.iter().map(|s| s.2 + 1).max().unwrap_or(0);
    let (mut accs, mut ts) = (Vec::new(), Vec::new());
    for k in 0..folds {
        let train: Vec<(f32, bool)> = scores
            .iter()
            .filter(|s| s.2 != k)
            .map(|s| (s.0, s.1))
            .collect();
        let test: Vec<(f32, bool)> = scores
            .iter()
            .filter(|s| s.2 == k)
            .map(|s| (s.0, s.1))
            .collect();
        if test.is_empty() {
            // A fold absent from the scores (`eval lfw --folds 6-10`).
            continue;
        }
        let t = best_threshold(&train);
        accs.push(accuracy(&test, t));
        ts.push(t);
    }
    let n = accs.len().max(1) as f64;
    let m = accs.iter().sum::<f64>() / n;
    let sd = (accs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / n).sqrt();
    (m, sd, ts.iter().sum::<f32>() / ts.len().max(1) as f32)
}

/// Impostor scores sorted descending, for threshold look-ups.
pub fn sort_desc(v: &mut [f32]) {
    v.sort_unstable_by(|a, b| b.total_cmp(a));
}

/// The lowest threshold whose false-accept rate on `imp_desc` (sorted
/// descending) is at most `far`: at most floor(far·n) impostors may score
/// at or above it. With ties, the threshold moves just above the tied
/// score, so the FAR bound always holds. Returns (threshold, achieved FAR).
pub fn threshold_at_far(imp_desc: &[f32], far: f64) -> (f32, f64) {
    let n = imp_desc.len();
    if n == 0 {
        return (f32::NEG_INFINITY, 0.0);
    }
    let k = (far * n as f64).floor() as usize;
    if k >= n {
        return (f32::NEG_INFINITY, 1.0);
    }
    // Accept score >= t with t just above imp_desc[k]: impostors accepted
    // are those strictly above imp_desc[k], at most k of them.
    let t = next_up(imp_desc[k]);
    let accepted = imp_desc.partition_point(|&s| s >= t);
    (t, accepted as f64 / n as f64)
}

/// The next f32 above x.
pub fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

/// Share of `gen` scoring at or above `t`.
pub fn rate_at_or_above(gen: &[f32], t: f32) -> f64 {
    gen.iter().filter(|&&s| s >= t).count() as f64 / gen.len().max(1) as f64
}

/// TAR at FAR: (TAR, threshold, achieved FAR).
pub fn tar_at_far(gen: &[f32], imp_desc: &[f32], far: f64) -> (f64, f32, f64) {
    let (t, a) = threshold_at_far(imp_desc, far);
    (rate_at_or_above(gen, t), t, a)
}

/// Equal error rate: FAR(t) = share of impostors >= t, FRR(t) = share of
/// genuine < t, evaluated at every distinct score; the crossing is
/// interpolated linearly between the two thresholds around it.
pub fn eer(gen: &[f32], imp: &[f32]) -> f64 {
    let mut g = gen.to_vec();
    let mut i = imp.to_vec();
    g.sort_unstable_by(f32::total_cmp);
    i.sort_unstable_by(f32::total_cmp);
    let (ng, ni) = (g.len().max(1) as f64, i.len().max(1) as f64);
    let mut cands: Vec<f32> = g.iter().chain(i.iter()).copied().collect();
    cands.sort_unstable_by(f32::total_cmp);
    cands.dedup();
    let rates = |t: f32| {
        let frr = g.partition_point(|&s| s < t) as f64 / ng;
        let far = (i.len() - i.partition_point(|&s| s < t)) as f64 / ni;
        (far, frr)
    };
    let mut prev: Option<(f64, f64)> = None;
    for &t in &cands {
        let (far, frr) = rates(t);
        if far <= frr {
            // Crossing between the previous candidate and this one.
            return match prev {
                Some((pfar, pfrr)) => {
                    let d0 = pfar - pfrr; // > 0
                    let d1 = far - frr; // <= 0
                    let w = d0 / (d0 - d1);
                    let far_x = pfar + w * (far - pfar);
                    let frr_x = pfrr + w * (frr - pfrr);
                    (far_x + frr_x) / 2.0
                }
                None => (far + frr) / 2.0,
            };
        }
        prev = Some((far, frr));
    }
    prev.map_or(0.0, |(a, b)| (a + b) / 2.0)
}

/// ROC points (FAR, TAR) at each distinct impostor score from the top,
/// thinned to about `max_points` on a log FAR axis.
pub fn roc(gen: &[f32], imp_desc: &[f32], max_points: usize) -> Vec<(f64, f64)> {
    let mut g = gen.to_vec();
    g.sort_unstable_by(f32::total_cmp);
    let n = imp_desc.len().max(1) as f64;
    let mut out = Vec::new();
    let lo = (1.0 / n).log10();
    for k in 0..=max_points {
        let far = 10f64.powf(lo * (1.0 - k as f64 / max_points as f64));
        let (t, a) = threshold_at_far(imp_desc, far);
        let tar = (g.len() - g.partition_point(|&s| s < t)) as f64 / g.len().max(1) as f64;
        if a > 0.0 {
            out.push((a, tar));
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_threshold_separates() {
        let s = vec![(0.9, true), (0.8, true), (0.3, false), (0.2, false)];
        let t = best_threshold(&s);
        assert!(t > 0.3 && t < 0.8, "{t}");
        assert_eq!(accuracy(&s, t), 1.0);
    }

    #[test]
    fn far_threshold_respects_ties() {
        let mut imp = vec![0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1];
        sort_desc(&mut imp);
        // FAR 0.2 allows 2 accepts but three impostors tie at 0.5: none may pass.
        let (t, a) = threshold_at_far(&imp, 0.2);
        assert!(t > 0.5 && a == 0.0, "{t} {a}");
        let (t, a) = threshold_at_far(&imp, 0.3);
        assert!(t > 0.1 && t <= 0.5 && (a - 0.3).abs() < 1e-9, "{t} {a}");
        let (tar, _, _) = tar_at_far(&[0.6, 0.5, 0.2], &imp, 0.3);
        assert!((tar - 1.0).abs() < 1e-9, "{tar}");
        let (tar, _, _) = tar_at_far(&[0.6, 0.5, 0.2], &imp, 0.2);
        assert!((tar - 1.0 / 3.0).abs() < 1e-9, "{tar}");
    }

    #[test]
    fn eer_of_separable_and_overlapping() {
        assert!(eer(&[0.9, 0.8], &[0.1, 0.2]) < 1e-9);
        // FAR = FRR = 1/4 at threshold 0.5.
        let e = eer(&[0.4, 0.6, 0.7, 0.8], &[0.1, 0.2, 0.3, 0.5]);
        assert!((e - 0.25).abs() < 1e-9, "{e}");
    }

    #[test]
    fn ten_fold_is_perfect_on_separable_data() {
        let s: Vec<(f32, bool, usize)> = (0..40)
            .map(|i| (if i % 2 == 0 { 0.8 } else { 0.2 }, i % 2 == 0, i / 4))
            .collect();
        assert_eq!(ten_fold(&s).0, 1.0);
    }

    #[test]
    fn ten_fold_ignores_absent_folds() {
        // Only folds 5..9 (as after `--folds 6-10`): the mean is over those
        // five, not diluted by five empty folds.
        let s: Vec<(f32, bool, usize)> = (0..40)
            .map(|i| (if i % 2 == 0 { 0.8 } else { 0.2 }, i % 2 == 0, 5 + i / 8))
            .collect();
        let (m, sd, _) = ten_fold(&s);
        assert_eq!((m, sd), (1.0, 0.0));
    }
}
