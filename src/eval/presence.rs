//! Mask presence in `facegate eval lfw` (issue 14 §6): the skin-share rule
//! and the bundle's classifier side by side, and the mixed rule as the
//! daemon deploys it.
//!
//! *Presence*: per condition (bare faces, each mask renderer), the share of
//! the pair images' faces each rule calls masked. The classifier runs on
//! the very whole-face embedding the table holds (the daemon's input to it).
//!
//! *Mixed rule as deployed*: unmasked enrolment (a whole-face template and,
//! with periocular comparison, a periocular one per image); each probe is
//! called masked or not by the rule, then compared whole face at the
//! unmasked threshold, whole face at the masked threshold (a masked probe
//! without periocular comparison), or periocular crop against periocular
//! template at the periocular threshold. Every pair i < j of an image set;
//! FRR over genuine pairs, FAR over impostor pairs, for bare and for masked
//! probes. A probe without a face is a rejection.

use std::fmt::Write as _;

use rayon::prelude::*;

use super::extract::{Table, FAIL_SCORE};
use super::lfw::person;
use super::report::{dot, pct};
use crate::engine::PeriocularMode;
use crate::face::presence::{Classifier, DEFAULT_THRESHOLD};

/// Periocular embeddings of the same images (the daemon's masked probes).
pub struct PeriocularData {
    pub mode: PeriocularMode,
    pub unmasked: Table,
    /// (renderer label, table), in the order of the whole-face ones.
    pub masked: Vec<(String, Table)>,
}

/// A presence rule applied to one table's images.
#[derive(Clone, Copy)]
pub enum Rule<'a> {
    Skin,
    Classifier(&'a Classifier),
}

impl Rule<'_> {
    pub fn label(&self) -> String {
        match self {
            Rule::Skin => format!("skin share < {DEFAULT_THRESHOLD}"),
            Rule::Classifier(c) => format!("classifier p >= {:.4}", c.threshold),
        }
    }

    /// Is this image of `t` called masked (None: no face)?
    pub fn masked(&self, t: &Table, image: &str) -> Option<bool> {
        match self {
            Rule::Skin => t.skin(image).map(|s| s < DEFAULT_THRESHOLD),
            Rule::Classifier(c) => t.get(image).map(|e| c.decide(e, None).1),
        }
    }
}

/// (called masked, faces) over `images` of `t`.
pub fn called_masked(rule: Rule, t: &Table, images: &[String]) -> (usize, usize) {
    images
        .iter()
        .filter_map(|i| rule.masked(t, i))
        .fold((0, 0), |(m, n), x| (m + x as usize, n + 1))
}

/// Calibrated thresholds of the mixed rule.
#[derive(Debug, Clone, Copy)]
pub struct MixedThresholds {
    pub unmasked: f32,
    pub masked: f32,
    /// Periocular threshold (None: masked probes stay whole face).
    pub periocular: Option<f32>,
}

/// One probe set: whole-face table and, when periocular comparison is on,
/// the periocular table of the same probes.
pub struct Probes<'a> {
    pub whole: &'a Table,
    pub periocular: Option<&'a Table>,
}

/// Counts of the mixed rule: (genuine accepted, genuine, impostors
/// accepted, impostors, probes called masked, probes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub genuine_accepted: usize,
    pub genuine: usize,
    pub impostor_accepted: usize,
    pub impostors: usize,
    pub called_masked: usize,
    pub probes: usize,
}

impl Counts {
    pub fn frr(&self) -> f64 {
        1.0 - self.genuine_accepted as f64 / self.genuine.max(1) as f64
    }
    pub fn far(&self) -> f64 {
        self.impostor_accepted as f64 / self.impostors.max(1) as f64
    }
}

/// Every pair i < j of `images`: enrolment i (whole face from `enrol`,
/// periocular from `enrol_peri`), probe j from `probes`, compared the way
/// `rule` sends it.
pub fn mixed_counts(
    images: &[String],
    enrol: &Table,
    enrol_peri: Option<&Table>,
    probes: &Probes,
    rule: Rule,
    th: MixedThresholds,
) -> Counts {
    let who: Vec<&str> = images.iter().map(|i| person(i)).collect();
    let peri_on = th.periocular.is_some() && enrol_peri.is_some() && probes.periocular.is_some();
    // Per probe: the embedding it is compared with, whether that is a
    // periocular one, and the threshold.
    let decided: Vec<Option<bool>> = images
        .iter()
        .map(|j| rule.masked(probes.whole, j))
        .collect();
    let plan: Vec<Option<(&[f32], bool, f32)>> = images
        .iter()
        .zip(&decided)
        .map(|(j, d)| {
            let masked = (*d)?;
            if masked && peri_on {
                let e = probes.periocular.and_then(|t| t.get(j))?;
                Some((e, true, th.periocular.unwrap_or(f32::INFINITY)))
            } else {
                let e = probes.whole.get(j)?;
                Some((e, false, if masked { th.masked } else { th.unmasked }))
            }
        })
        .collect();
    let mut c = (1..images.len())
        .into_par_iter()
        .map(|j| {
            let mut c = Counts::default();
            for i in 0..j {
                let s = match plan[j] {
                    Some((y, true, t)) => enrol_peri
                        .and_then(|p| p.get(&images[i]))
                        .map_or((FAIL_SCORE, t), |x| (dot(x, y), t)),
                    Some((y, _, t)) => enrol
                        .get(&images[i])
                        .map_or((FAIL_SCORE, t), |x| (dot(x, y), t)),
                    None => (FAIL_SCORE, f32::INFINITY),
                };
                let acc = s.0 >= s.1;
                if who[i] == who[j] {
                    c.genuine += 1;
                    c.genuine_accepted += acc as usize;
                } else {
                    c.impostors += 1;
                    c.impostor_accepted += acc as usize;
                }
            }
            c
        })
        .reduce(Counts::default, |a, b| Counts {
            genuine_accepted: a.genuine_accepted + b.genuine_accepted,
            genuine: a.genuine + b.genuine,
            impostor_accepted: a.impostor_accepted + b.impostor_accepted,
            impostors: a.impostors + b.impostors,
            called_masked: 0,
            probes: 0,
        });
    c.called_masked = decided.iter().filter(|d| **d == Some(true)).count();
    c.probes = decided.iter().flatten().count();
    c
}

/// The mixed rule over explicit (probe, enrolment) pairs of indices into
/// per-image embeddings (None: no face): `masked[probe]` is the presence
/// call, `periocular` the periocular embeddings (None: masked probes stay
/// whole face). For data sets with their own pairing (`eval m2fred`).
pub fn mixed_pairs(
    genuine: &[(usize, usize)],
    impostor: &[(usize, usize)],
    whole: &[Option<Vec<f32>>],
    periocular: Option<&[Option<Vec<f32>>]>,
    masked: &[Option<bool>],
    th: MixedThresholds,
) -> Counts {
    let peri = periocular.filter(|_| th.periocular.is_some());
    let accepted = |&(probe, enrol): &(usize, usize)| -> bool {
        let m = masked.get(probe).copied().flatten();
        let (table, t) = match (m, peri) {
            (None, _) => return false,
            (Some(true), Some(p)) => (p, th.periocular.unwrap_or(f32::INFINITY)),
            (Some(true), None) => (whole, th.masked),
            (Some(false), _) => (whole, th.unmasked),
        };
        match (table.get(probe), table.get(enrol)) {
            (Some(Some(x)), Some(Some(y))) => dot(x, y) >= t,
            _ => false,
        }
    };
    let mut probes: Vec<usize> = genuine.iter().chain(impostor).map(|p| p.0).collect();
    probes.sort_unstable();
    probes.dedup();
    let decided: Vec<bool> = probes
        .iter()
        .filter_map(|&i| masked.get(i).copied().flatten())
        .collect();
    Counts {
        genuine_accepted: genuine.iter().filter(|p| accepted(p)).count(),
        genuine: genuine.len(),
        impostor_accepted: impostor.iter().filter(|p| accepted(p)).count(),
        impostors: impostor.len(),
        called_masked: decided.iter().filter(|&&m| m).count(),
        probes: decided.len(),
    }
}

/// Rows of the mixed rule for one bundle over explicitly paired sets
/// (`eval m2fred`): per set, the skin rule (`whole.1`, its calls) and the
/// classifier when there is one (on `whole.0`, the whole-face embeddings),
/// masked probes compared as periocular crops (`peri`) at `periocular`.
pub fn pair_rows(
    name: &str,
    sets: &[(&str, &super::m2fred::Pairs)],
    whole: (&[Option<Vec<f32>>], &[Option<bool>]),
    peri: &[Option<Vec<f32>>],
    cls: Option<&Classifier>,
    th: &crate::bundle::Thresholds,
    periocular: f32,
) -> String {
    let (Some(unmasked), Some(masked)) = (th.unmasked, th.masked) else {
        return String::new();
    };
    let t = MixedThresholds {
        unmasked,
        masked,
        periocular: Some(periocular),
    };
    let mut rules = vec![(
        format!("skin share < {DEFAULT_THRESHOLD}"),
        whole.1.to_vec(),
    )];
    if let Some(c) = cls {
        let calls = whole
            .0
            .iter()
            .map(|e| e.as_ref().map(|v| c.decide(v, None).1))
            .collect();
        rules.push((format!("classifier p >= {:.4}", c.threshold), calls));
    }
    let frac = |k: usize, n: usize| format!("{} ({k}/{n})", pct(k as f64 / n.max(1) as f64));
    let mut s = String::new();
    for (label, p) in sets {
        for (rule, calls) in &rules {
            let c = mixed_pairs(&p.genuine, &p.impostor, whole.0, Some(peri), calls, t);
            let _ = writeln!(
                s,
                "| {name} | {label} | {rule} | {} | {} | {} |",
                frac(c.called_masked, c.probes),
                frac(c.genuine - c.genuine_accepted, c.genuine),
                frac(c.impostor_accepted, c.impostors)
            );
        }
    }
    s
}

/// The report section. `sets`: (name, images) to run the mixed rule on
/// (e.g. the calibration images, the pair images); `probe_sets`: (label,
/// whole-face table, periocular table) with the bare faces first.
pub fn section(
    classifier: Option<&Classifier>,
    pair_images: &[String],
    enrol: (&Table, Option<&Table>),
    probe_sets: &[(String, Probes)],
    sets: &[(&str, &[String])],
    th: MixedThresholds,
) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "## Mask presence (issue 14 §6)\n");
    let mut rules = vec![Rule::Skin];
    if let Some(c) = classifier {
        rules.push(Rule::Classifier(c));
    } else {
        let _ = writeln!(r, "The bundle has no presence classifier (`[presence]`, built by `models/build --lfw`): the skin-share rule only.\n");
    }
    let _ = writeln!(
        r,
        "Faces of the {} pair images called masked, per condition (the classifier on the whole-face embedding the device computes first).\n",
        pair_images.len()
    );
    let mut head = "| probes |".to_string();
    let mut sep = "| --- |".to_string();
    for rule in &rules {
        let _ = write!(head, " {} |", rule.label());
        sep.push_str(" --- |");
    }
    let _ = writeln!(r, "{head}\n{sep}");
    for (label, p) in probe_sets {
        let _ = write!(r, "| {label} |");
        for rule in &rules {
            let (m, n) = called_masked(*rule, p.whole, pair_images);
            let _ = write!(r, " {} ({m}/{n}) |", pct(m as f64 / n.max(1) as f64));
        }
        let _ = writeln!(r);
    }
    let _ = writeln!(
        r,
        "\n### Mixed rule as deployed\n\nUnmasked enrolment; each probe called masked or not by the rule, then compared {}; thresholds: unmasked {:.4}, masked {:.4}{} (calibrated). Every pair i < j of the image set; a probe set is all bare or all masked probes. The classifier (`models/build --lfw`) is trained on the LFW people in no pair, who are among the calibration images: its calibration rows are on its own training people, the pair images' rows are person-disjoint from it.\n",
        if th.periocular.is_some() {
            "whole face (bare) or periocular crop against the periocular template (masked)"
        } else {
            "whole face, at the threshold of its presence call"
        },
        th.unmasked,
        th.masked,
        th.periocular
            .map_or(String::new(), |p| format!(", periocular {p:.4}"))
    );
    let _ = writeln!(r, "| images | probes | rule | called masked | FRR | FAR |\n| --- | --- | --- | --- | --- | --- |");
    for (set, images) in sets {
        // Only the probe sets extracted for this image set (a second
        // renderer covers the pair images only).
        let covered =
            |t: Option<&Table>| t.is_none_or(|t| images.iter().all(|i| t.index.contains_key(i)));
        for (label, p) in probe_sets
            .iter()
            .filter(|(_, p)| covered(Some(p.whole)) && covered(p.periocular))
        {
            for rule in &rules {
                let c = mixed_counts(images, enrol.0, enrol.1, p, *rule, th);
                let _ = writeln!(
                    r,
                    "| {set} | {label} | {} | {} | {} | {:.2e} |",
                    rule.label(),
                    pct(c.called_masked as f64 / c.probes.max(1) as f64),
                    pct(c.frr()),
                    c.far()
                );
            }
        }
    }
    let _ = writeln!(r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::extract::Status;
    use std::collections::HashMap;

    const IMAGES: [&str; 4] = [
        "A/A_0001.jpg",
        "A/A_0002.jpg",
        "B/B_0001.jpg",
        "B/B_0002.jpg",
    ];

    fn table(rows: [([f32; 2], f32); 4]) -> Table {
        let mut t = Table {
            dim: 2,
            index: HashMap::new(),
            status: Vec::new(),
            skin: Vec::new(),
            emb: Vec::new(),
        };
        for (i, (e, s)) in IMAGES.iter().zip(rows) {
            t.index.insert(i.to_string(), t.status.len());
            t.status.push(Status::Ok);
            t.skin.push(s);
            t.emb.extend_from_slice(&e);
        }
        t
    }

    fn images() -> Vec<String> {
        IMAGES.iter().map(|s| s.to_string()).collect()
    }

    /// Bare: A = (1, 0), B = (0, 1), skin 0.9. Masked whole faces: A =
    /// (0.6, 0.8), B = (0.8, 0.6), skin 0.1. Periocular: as bare.
    fn fixture() -> (Table, Table, Table, Table) {
        let (a, b) = ([1.0, 0.0], [0.0, 1.0]);
        let bare = table([(a, 0.9), (a, 0.9), (b, 0.9), (b, 0.9)]);
        let peri = table([(a, 0.0), (a, 0.0), (b, 0.0), (b, 0.0)]);
        let (ma, mb) = ([0.6, 0.8], [0.8, 0.6]);
        let masked = table([(ma, 0.1), (ma, 0.1), (mb, 0.1), (mb, 0.1)]);
        let masked_peri = table([(a, 0.0), (a, 0.0), (b, 0.0), (b, 0.0)]);
        (bare, peri, masked, masked_peri)
    }

    fn classifier() -> Classifier {
        // Masked when the second component beats the first.
        Classifier::from_section(&crate::bundle::presence::PresenceSection {
            kind: "logistic-embedding".into(),
            model_sha256: String::new(),
            weights: vec![-10.0, 10.0],
            bias: 0.0,
            threshold: 0.5,
            data: None,
            holdout_bare_masked: None,
            holdout_masked_masked: None,
        })
    }

    const TH: MixedThresholds = MixedThresholds {
        unmasked: 0.9,
        masked: 0.95,
        periocular: Some(0.5),
    };

    #[test]
    fn each_probe_is_compared_the_way_its_presence_call_sends_it() {
        let (bare, peri, masked, masked_peri) = fixture();
        let imgs = images();
        let c = classifier();
        let probes = Probes {
            whole: &masked,
            periocular: Some(&masked_peri),
        };
        let run = |rule, th| mixed_counts(&imgs, &bare, Some(&peri), &probes, rule, th);
        // Skin says every masked probe is masked: all periocular, both
        // genuine pairs pass, no impostor does.
        let skin = run(Rule::Skin, TH);
        assert_eq!(
            skin,
            Counts {
                genuine_accepted: 2,
                genuine: 2,
                impostor_accepted: 0,
                impostors: 4,
                called_masked: 4,
                probes: 4
            }
        );
        // The classifier calls B's masked faces bare: B's genuine pair is
        // compared whole face at the unmasked threshold and fails.
        let cls = run(Rule::Classifier(&c), TH);
        assert_eq!((cls.genuine_accepted, cls.called_masked), (1, 2));
        assert_eq!((cls.frr(), cls.far()), (0.5, 0.0));
        // Without periocular comparison a masked call means the masked
        // threshold on the whole face: 0.95 rejects both genuine pairs,
        // 0.55 accepts them and every impostor (cosine 0.8 or 0.6).
        let whole = MixedThresholds {
            periocular: None,
            ..TH
        };
        assert_eq!(run(Rule::Skin, whole).frr(), 1.0);
        let loose = run(
            Rule::Skin,
            MixedThresholds {
                masked: 0.55,
                ..whole
            },
        );
        assert_eq!((loose.frr(), loose.far()), (0.0, 1.0));
        // Bare probes: skin calls them bare (whole face); the classifier
        // calls B's bare (0, 1) masked, which goes periocular (and passes
        // here: the periocular embeddings are the bare ones).
        let bp = Probes {
            whole: &bare,
            periocular: Some(&peri),
        };
        for (rule, called) in [(Rule::Skin, 0), (Rule::Classifier(&c), 2)] {
            let b = mixed_counts(&imgs, &bare, Some(&peri), &bp, rule, TH);
            assert_eq!((b.frr(), b.far(), b.called_masked), (0.0, 0.0, called));
        }
        assert_eq!(called_masked(Rule::Classifier(&c), &masked, &imgs), (2, 4));
        assert_eq!(called_masked(Rule::Skin, &masked, &imgs), (4, 4));
    }

    #[test]
    fn explicit_pairs_follow_the_presence_call() {
        // Probe 0 (masked, periocular matches enrolment 2), probe 1 (bare,
        // whole face matches enrolment 2), probe 3 no face.
        let whole = vec![
            Some(vec![0.6, 0.8]),
            Some(vec![1.0, 0.0]),
            Some(vec![1.0, 0.0]),
            None,
        ];
        let peri = vec![Some(vec![1.0, 0.0]), None, Some(vec![1.0, 0.0]), None];
        let masked = [Some(true), Some(false), Some(false), None];
        let (g, i) = ([(0, 2), (1, 2), (3, 2)], [(0, 1)]);
        let c = mixed_pairs(&g, &i, &whole, Some(&peri), &masked, TH);
        assert_eq!((c.genuine_accepted, c.genuine), (2, 3));
        // The impostor pair (0, 1): periocular of 1 is missing, rejected;
        // probe 3 has no face (a rejection, not a presence call).
        assert_eq!((c.impostor_accepted, c.called_masked, c.probes), (0, 1, 2));
        // Without periocular comparison the masked probe 0 is compared whole
        // face at the masked threshold (0.6 < 0.95).
        let w = MixedThresholds {
            periocular: None,
            ..TH
        };
        let c = mixed_pairs(&g, &i, &whole, Some(&peri), &masked, w);
        assert_eq!(c.genuine_accepted, 1);
    }

    #[test]
    fn the_report_section_has_both_rules_and_the_mixed_rule_table() {
        let (bare, peri, masked, masked_peri) = fixture();
        let imgs = images();
        let c = classifier();
        let probes = vec![
            (
                "bare".to_string(),
                Probes {
                    whole: &bare,
                    periocular: Some(&peri),
                },
            ),
            (
                "masked (procedural)".to_string(),
                Probes {
                    whole: &masked,
                    periocular: Some(&masked_peri),
                },
            ),
        ];
        let s = section(
            Some(&c),
            &imgs,
            (&bare, Some(&peri)),
            &probes,
            &[("pair images", &imgs)],
            TH,
        );
        assert!(s.contains("## Mask presence"), "{s}");
        assert!(
            s.contains("| probes | skin share < 0.35 | classifier p >= 0.5000 |"),
            "{s}"
        );
        assert!(
            s.contains("| masked (procedural) | 100.00 % (4/4) | 50.00 % (2/4) |"),
            "{s}"
        );
        assert!(s.contains("### Mixed rule as deployed"), "{s}");
        assert!(
            s.contains("| pair images | masked (procedural) | classifier p >= 0.5000 | 50.00 % | 50.00 % | 0.00e0 |"),
            "{s}"
        );
        // Without a classifier: the skin rule only, and said so.
        let s = section(None, &imgs, (&bare, None), &probes[..1], &[], TH);
        assert!(
            s.contains("no presence classifier") && !s.contains("classifier p"),
            "{s}"
        );
    }
}
