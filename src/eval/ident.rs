//! Open-set identification (the door: who is this, or nobody?) and its
//! thresholds for the gallery's size (issue 15; the model is in
//! [`crate::ident`]).
//!
//! Calibration: on the calibration images, every probe is compared with
//! every *other person*, the score being the best over that person's
//! unmasked images (how the gallery scan scores a user): the per-person
//! impostor distribution, per probe condition. Its tail becomes the
//! [`IdentTable`] written to `thresholds.toml`.
//!
//! Check: on the pair images, N people are enrolled (first image, unmasked)
//! and probed by their other images (mated) and by people never enrolled
//! (non-mated); at the table's threshold for N the measured FPIR is set
//! beside the predicted one, with the DIR it leaves.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rayon::prelude::*;

use super::extract::{Table, FAIL_SCORE};
use super::lfw::person;
use super::report::{dot, Data};
use super::stats::{sort_desc, threshold_at_far};
use crate::ident::{levels, predicted_fpir, IdentTable};

/// Per-person impostor scores: for every probe image j (from `probe`) and
/// every person P other than j's (enrolment: P's images from `enrol`), the
/// best score over P's templates. A failed probe scores [`FAIL_SCORE`]
/// against everyone; a person whose templates all failed scores it too.
pub fn per_person_impostors(images: &[String], enrol: &Table, probe: &Table) -> Vec<f32> {
    let mut by: BTreeMap<&str, Vec<&[f32]>> = BTreeMap::new();
    for i in images {
        let e = by.entry(person(i)).or_default();
        if let Some(x) = enrol.get(i) {
            e.push(x);
        }
    }
    let people: Vec<(&str, Vec<&[f32]>)> = by.into_iter().collect();
    let probes: Vec<(&str, Option<&[f32]>)> =
        images.iter().map(|i| (person(i), probe.get(i))).collect();
    impostors_of(&probes, &people)
}

/// [`per_person_impostors`] over plain vectors (for tests).
pub fn impostors_of(probes: &[(&str, Option<&[f32]>)], people: &[(&str, Vec<&[f32]>)]) -> Vec<f32> {
    probes
        .par_iter()
        .map(|(who, y)| {
            people
                .iter()
                .filter(|(p, _)| p != who)
                .map(|(_, ts)| match y {
                    Some(y) => ts.iter().map(|x| dot(x, y)).fold(FAIL_SCORE, f32::max),
                    None => FAIL_SCORE,
                })
                .collect::<Vec<f32>>()
        })
        .flatten()
        .collect()
}

/// Round a FAR level up to 4 significant digits (the value written).
fn level_up(f: f64) -> f64 {
    // f = m · 10^-d with m in [1000, 10000): ceil(m) / 10^d, exact powers.
    // (The mantissa is first rounded to 1e-6 so that float noise in
    // 10^(-k/10) does not bump 1e-5 to 1.001e-5.)
    let d = 3.0 - f.log10().floor();
    let p = 10f64.powf(d);
    ((f * p * 1e6).round() / 1e6).ceil() / p
}

/// The identification table from the per-person impostor scores of the
/// unmasked and the masked probes (sorted descending): FAR levels down to
/// the last one both can measure, each condition's lowest threshold whose
/// FAR is at most the level (rounded up to 1e-4, so never looser). None
/// when even 1e-1 cannot be measured.
pub fn table(unmasked_desc: &[f32], masked_desc: &[f32]) -> Option<IdentTable> {
    let n = unmasked_desc.len().min(masked_desc.len());
    let far: Vec<f64> = levels(n).into_iter().map(level_up).collect();
    if far.is_empty() {
        return None;
    }
    let up = |t: f32| ((t as f64 * 1e4).ceil() / 1e4) as f32;
    let at = |imp: &[f32]| -> Vec<f32> {
        far.iter()
            .map(|&f| up(threshold_at_far(imp, f).0).clamp(-1.0, 1.0))
            .collect()
    };
    Some(IdentTable {
        periocular: None,
        unmasked: at(unmasked_desc),
        masked: at(masked_desc),
        far,
    })
}

/// Share of `imp_desc` (sorted descending) at or above `t`.
pub fn far_at(imp_desc: &[f32], t: f32) -> f64 {
    imp_desc.partition_point(|&s| s >= t) as f64 / imp_desc.len().max(1) as f64
}

/// A probe of the open-set check: its person's index in the gallery list
/// (None: not a gallery person at all), and whether it is that person's
/// enrolment image (a probe only while they are not enrolled).
#[derive(Debug, Clone, Copy)]
pub struct ProbeRef {
    pub person: Option<usize>,
    pub enrol_image: bool,
}

/// Counts of one check at threshold `t` with `enrolled[g]` people enrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Non-mated probes (people not enrolled) and those named somebody.
    pub non_mated: usize,
    pub false_ids: usize,
    /// Mated probes and those named rightly at or above `t`.
    pub mated: usize,
    pub right: usize,
}

/// Measure FPIR and DIR: `scores[j][g]` is probe j against gallery person g.
pub fn check(scores: &[Vec<f32>], probes: &[ProbeRef], enrolled: &[bool], t: f32) -> Counts {
    let mut c = Counts::default();
    for (s, p) in scores.iter().zip(probes) {
        let mated = p.person.is_some_and(|g| enrolled[g]);
        if mated && p.enrol_image {
            continue; // the enrolled image itself
        }
        let best = s.iter().enumerate().filter(|(g, _)| enrolled[*g]).fold(
            (FAIL_SCORE, usize::MAX),
            |b, (g, &v)| {
                if v > b.0 {
                    (v, g)
                } else {
                    b
                }
            },
        );
        if mated {
            c.mated += 1;
            c.right += (best.0 >= t && Some(best.1) == p.person) as usize;
        } else {
            c.non_mated += 1;
            c.false_ids += (best.0 >= t) as usize;
        }
    }
    c
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

/// The calibration's part of the report: the table's thresholds at a few
/// gallery sizes, and the largest gallery it serves.
pub fn calibration_section(t: &IdentTable, n_imp: (usize, usize), cal_images: usize) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "## Identification thresholds for the gallery's size (target FPIR per attempt)\n\nPer-person impostor scores on the {cal_images} calibration images: every probe against every other person, scored by the best of that person's (unmasked) images: {} comparisons with unmasked probes, {} with masked probes. FPIR(t, N) ≈ 1 − (1 − FAR(t))^N for N enrolled *people*; the tail is stored for {} FAR levels, {:e} … {:.3e} (the last level at which ≥ {} calibration impostors still score above the threshold: a smaller FAR cannot be measured here, which caps N).\n", n_imp.0, n_imp.1, t.far.len(), t.far[0], t.lowest(), crate::ident::MIN_TAIL_IMPOSTORS);
    let _ = writeln!(
        r,
        "| FPIR | people N | unmasked threshold | masked threshold |\n| --- | --- | --- | --- |"
    );
    for fpir in [1e-2, 1e-3] {
        for n in [1usize, 10, 100, 1000, 10_000] {
            let f = |m: bool| {
                t.threshold(m, n, fpir)
                    .map_or("refused".to_string(), |v| format!("{v:.4}"))
            };
            let _ = writeln!(r, "| {fpir:e} | {n} | {} | {} |", f(false), f(true));
        }
        let _ = writeln!(
            r,
            "| {fpir:e} | largest served: {} | | |",
            t.max_people(fpir)
        );
    }
    let _ = writeln!(r);
    r
}

/// Calibrated per-person impostors of both probe conditions (sorted
/// descending) and the table made from them.
pub struct Calibration {
    pub table: IdentTable,
    pub unmasked_desc: Vec<f32>,
    pub masked_desc: Vec<f32>,
}

/// Open-set identification on the pair images: people with two or more
/// pair images are the gallery (first image, unmasked); their other images
/// are mated probes; people with a single pair image are non-mated probes.
/// DIR at FPIR f (first table): the threshold lets through at most f of
/// the non-mated probes (their best gallery score), DIR = share of mated
/// probes whose best match is the right person at or above it. Second
/// table: the calibrated thresholds for N people (issue 15).
pub fn open_set_section(d: &Data, images: &[String], cal: Option<&Calibration>) -> String {
    let mut by: BTreeMap<&str, Vec<&String>> = Default::default();
    for i in images {
        by.entry(person(i)).or_default().push(i);
    }
    let gallery: Vec<(&str, &String)> = by
        .iter()
        .filter(|(_, v)| v.len() >= 2)
        .map(|(p, v)| (*p, v[0]))
        .collect();
    let mated: Vec<(&str, &String)> = by
        .iter()
        .filter(|(_, v)| v.len() >= 2)
        .flat_map(|(p, v)| v[1..].iter().map(move |i| (*p, *i)))
        .collect();
    let non: Vec<&String> = by.values().filter(|v| v.len() == 1).map(|v| v[0]).collect();
    let mut r = String::new();
    let _ = writeln!(r, "## Open-set identification (the door: who is this, or nobody?)\n\nGallery: {} people (first pair image, unmasked). Mated probes: their {} other pair images; non-mated probes: {} images of people not enrolled (FPIR 1e-3 = at most {} of them accepted). A probe with no face counts as not identified.\n", gallery.len(), mated.len(), non.len(), (1e-3 * non.len() as f64).floor());
    let _ = writeln!(r, "| probes | rank-1 (closed set) | DIR @ FPIR 1e-2 | DIR @ FPIR 1e-3 |\n| --- | --- | --- | --- |");
    let genc: Vec<Option<&[f32]>> = gallery.iter().map(|(_, i)| d.unmasked.get(i)).collect();
    let row = |pt: &Table, i: &String| -> Vec<f32> {
        match pt.get(i) {
            Some(y) => genc
                .iter()
                .map(|g| g.map_or(FAIL_SCORE, |x| dot(x, y)))
                .collect(),
            None => vec![FAIL_SCORE; genc.len()],
        }
    };
    let best = |s: &[f32]| -> (f32, usize) {
        s.iter().enumerate().fold(
            (FAIL_SCORE, usize::MAX),
            |b, (k, &v)| {
                if v > b.0 {
                    (v, k)
                } else {
                    b
                }
            },
        )
    };
    let mut probes: Vec<(String, &Table, bool)> = vec![("unmasked".into(), &d.unmasked, false)];
    for (l, t) in &d.masked {
        probes.push((format!("masked ({l})"), t, true));
    }
    let mut checks = String::new();
    for (pl, pt, masked) in &probes {
        let m: Vec<(f32, bool)> = mated
            .par_iter()
            .map(|(p, i)| {
                let (s, k) = best(&row(pt, i));
                (s, k != usize::MAX && gallery[k].0 == *p)
            })
            .collect();
        let mut nm: Vec<f32> = non.par_iter().map(|i| best(&row(pt, i)).0).collect();
        sort_desc(&mut nm);
        let rank1 = m.iter().filter(|x| x.1).count() as f64 / m.len().max(1) as f64;
        let dir = |f: f64| {
            let (t, _) = threshold_at_far(&nm, f);
            m.iter().filter(|x| x.1 && x.0 >= t).count() as f64 / m.len().max(1) as f64
        };
        let _ = writeln!(
            r,
            "| {pl} | {} | {} | {} |",
            pct(rank1),
            pct(dir(1e-2)),
            pct(dir(1e-3))
        );
        if let Some(c) = cal {
            checks.push_str(&check_rows(pl, *masked, c, &gallery, &by, &|i: &String| {
                row(pt, i)
            }));
        }
    }
    let _ = writeln!(r);
    if cal.is_some() {
        let _ = writeln!(r, "### At the calibrated identification thresholds (N people enrolled)\n\nN of the {} gallery people enrolled (first pair image, unmasked; chosen by a hash of the name), threshold = the calibrated table's for N at the target FPIR (the daemon also never goes below its 1:1 thresholds; not applied here). Non-mated probes: every pair image of the people *not* enrolled (the single-image people and the gallery people left out). Predicted FPIR = 1 − (1 − FAR(t))^N with FAR(t) the calibration's per-person impostor rate at that threshold; measured = share of non-mated probes named somebody (count / probes). DIR = share of mated probes named rightly at or above the threshold. The calibration person has 1–{} images (max over them), the check enrols one: the prediction is meant to be an upper bound.\n", gallery.len(), super::report::CAL_PER_PERSON);
        let _ = writeln!(r, "| probes | N | target FPIR | threshold | FAR(t) per person (calibration) | predicted FPIR | measured FPIR | DIR |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n{checks}");
    }
    r
}

/// The check's rows of one probe condition.
fn check_rows(
    label: &str,
    masked: bool,
    cal: &Calibration,
    gallery: &[(&str, &String)],
    by: &BTreeMap<&str, Vec<&String>>,
    row: &(dyn Fn(&String) -> Vec<f32> + Sync),
) -> String {
    let index: std::collections::HashMap<&str, usize> =
        gallery.iter().enumerate().map(|(k, g)| (g.0, k)).collect();
    let mut refs = Vec::new();
    let mut imgs: Vec<&String> = Vec::new();
    for (p, v) in by {
        for (k, i) in v.iter().enumerate() {
            let g = index.get(p).copied();
            refs.push(ProbeRef {
                person: g,
                enrol_image: g.is_some() && k == 0,
            });
            imgs.push(i);
        }
    }
    let scores: Vec<Vec<f32>> = imgs.par_iter().map(|i| row(i)).collect();
    // Enrolment order: a hash of the name (fixed, not alphabetical).
    let mut order: Vec<usize> = (0..gallery.len()).collect();
    order.sort_by_key(|&k| super::fnv1a(gallery[k].0));
    let mut ns: Vec<usize> = [100, 1000, gallery.len()]
        .into_iter()
        .filter(|&n| n <= gallery.len())
        .collect();
    ns.dedup();
    let imp = if masked {
        &cal.masked_desc
    } else {
        &cal.unmasked_desc
    };
    let mut out = String::new();
    for n in ns {
        let mut enrolled = vec![false; gallery.len()];
        for &k in order.iter().take(n) {
            enrolled[k] = true;
        }
        for fpir in [1e-2, 1e-3] {
            let Ok(t) = cal.table.threshold(masked, n, fpir) else {
                let _ = writeln!(
                    out,
                    "| {label} | {n} | {fpir:e} | refused (at most {} people) | | | | |",
                    cal.table.max_people(fpir)
                );
                continue;
            };
            let c = check(&scores, &refs, &enrolled, t);
            let far = far_at(imp, t);
            let _ = writeln!(
                out,
                "| {label} | {n} | {fpir:e} | {t:.4} | {far:.2e} | {:.2e} | {:.2e} ({} / {}) | {} |",
                predicted_fpir(far, n),
                c.false_ids as f64 / c.non_mated.max(1) as f64,
                c.false_ids,
                c.non_mated,
                pct(c.right as f64 / c.mated.max(1) as f64)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::far_needed;

    /// xorshift64*, uniform in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    #[test]
    fn per_person_scores_take_the_best_template_and_skip_the_own_person() {
        let e = |v: [f32; 2]| v;
        let a1 = e([1.0, 0.0]);
        let a2 = e([0.0, 1.0]);
        let b1 = e([0.6, 0.8]);
        let people: Vec<(&str, Vec<&[f32]>)> =
            vec![("a", vec![&a1, &a2]), ("b", vec![&b1]), ("c", vec![])];
        let probes: Vec<(&str, Option<&[f32]>)> = vec![("b", Some(&b1)), ("a", None)];
        let s = impostors_of(&probes, &people);
        // Probe b vs a: max(0.6, 0.8); vs c: no template; a (failed) vs b, c.
        assert_eq!(s.len(), 4);
        assert!((s[0] - 0.8).abs() < 1e-6, "{s:?}");
        assert_eq!(&s[1..], &[FAIL_SCORE; 3]);
    }

    #[test]
    fn table_levels_hold_on_the_calibration_scores() {
        let mut rng = Rng(7);
        let mut u: Vec<f32> = (0..200_000).map(|_| rng.next()).collect();
        let mut m: Vec<f32> = (0..150_000).map(|_| rng.next() * 0.9).collect();
        sort_desc(&mut u);
        sort_desc(&mut m);
        let t = table(&u, &m).unwrap();
        t.validate().unwrap();
        // The shorter set decides the depth: 5 / 150,000 = 3.3e-5.
        assert!(
            t.lowest() >= 5.0 / 150_000.0 && t.lowest() < 6e-5,
            "{}",
            t.lowest()
        );
        for (k, &f) in t.far.iter().enumerate() {
            assert!(far_at(&u, t.unmasked[k]) <= f, "level {f}");
            assert!(far_at(&m, t.masked[k]) <= f, "level {f}");
            // Uniform scores: the threshold sits near 1 − f (rounding 1e-4).
            assert!((t.unmasked[k] as f64 - (1.0 - f)).abs() < 2e-3 + 2.0 * f.sqrt() / 450.0);
        }
        assert_eq!(level_up(1.2589254117941662e-6), 1.259e-6);
        assert_eq!(level_up(10f64.powf(-5.0)), 1e-5);
        assert_eq!(level_up(1.00000000000003e-5), 1e-5);
        for f in levels(10_000_000) {
            assert!(level_up(f) >= f && level_up(f) < f * 1.001, "{f}");
        }
        assert!(table(&u[..40], &m[..40]).is_none());
    }

    /// Independent impostors with FAR(t) = e^(−20 t): the measured FPIR at
    /// t(N) matches 1 − (1 − FAR(t))^N, the calibration's estimate of it
    /// stays under the target, and more people raise the threshold.
    #[test]
    fn predicted_fpir_matches_a_simulated_gallery() {
        let mut rng = Rng(42);
        let mut draw =
            move || -(((rng.next() as f64) + 0.5 / (1u64 << 24) as f64).ln() / 20.0) as f32;
        let mut cal: Vec<f32> = (0..2_000_000).map(|_| draw()).collect();
        sort_desc(&mut cal);
        let t = table(&cal, &cal).unwrap();
        let (g, probes) = (500usize, 20_000usize);
        let scores: Vec<Vec<f32>> = (0..probes)
            .map(|_| (0..g).map(|_| draw()).collect())
            .collect();
        let refs = vec![
            ProbeRef {
                person: None,
                enrol_image: false
            };
            probes
        ];
        let mut last = f32::NEG_INFINITY;
        for n in [50, 500] {
            let enrolled: Vec<bool> = (0..g).map(|k| k < n).collect();
            let th = t.threshold(false, n, 1e-2).unwrap();
            assert!(th > last);
            last = th;
            let c = check(&scores, &refs, &enrolled, th);
            assert_eq!((c.non_mated, c.mated), (probes, 0));
            let measured = c.false_ids as f64 / probes as f64;
            let truth = predicted_fpir((-20.0 * th as f64).exp(), n);
            // ~200 expected false identifications: within 4 σ.
            assert!(
                (measured - truth).abs() < 4.0 * (truth / probes as f64).sqrt(),
                "N {n}: measured {measured}, true {truth}"
            );
            // The calibrated estimate: at most the target (the level chosen
            // is at most 10^0.1 below the need, plus sampling).
            let predicted = predicted_fpir(far_at(&cal, th), n);
            assert!(far_at(&cal, th) <= far_needed(n, 1e-2));
            assert!(predicted <= 1e-2 && predicted > 1e-2 / 1.6, "{predicted}");
            assert!(truth <= 1e-2 * 1.4 && truth > 1e-2 / 2.0, "N {n}: {truth}");
        }
    }

    #[test]
    fn check_counts_mated_and_non_mated() {
        // Gallery persons 0, 1; probe 0 is person 0's enrolment image.
        let scores = vec![
            vec![1.0, 0.2],  // person 0, enrol image
            vec![0.7, 0.3],  // person 0, right
            vec![0.4, 0.75], // person 0, named 1: wrong
            vec![0.1, 0.65], // person 1
            vec![0.2, 0.62], // outsider: named 1
            vec![0.55, 0.5], // outsider: below t
        ];
        let refs = [
            (Some(0), true),
            (Some(0), false),
            (Some(0), false),
            (Some(1), false),
            (None, false),
            (None, false),
        ]
        .map(|(person, enrol_image)| ProbeRef {
            person,
            enrol_image,
        });
        let c = check(&scores, &refs, &[true, true], 0.6);
        assert_eq!(
            c,
            Counts {
                non_mated: 2,
                false_ids: 1,
                mated: 3,
                right: 2
            }
        );
        // Person 1 not enrolled: their probe is non-mated and names 0? 0.1 < t.
        let c = check(&scores, &refs, &[true, false], 0.6);
        assert_eq!(
            c,
            Counts {
                non_mated: 3,
                false_ids: 0,
                mated: 2,
                right: 1
            }
        );
    }
}
