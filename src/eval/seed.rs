//! The seed report's protocol, reproduced so its numbers can be put next to
//! ours (issue 6): a closed-set 1-NN "classifier" over all of LFW.
//!
//! Split (per person, image order shuffled by a fixed seed): a person with
//! ≥ 3 images gives one image to validation and one to test; a person with
//! exactly 2 gives one to validation *or* test (alternating by a hash of the
//! name); everything else (all single-image people included) is the gallery.
//! Every probe's identity is enrolled, so this is closed-set identification.
//!
//! The report's "accuracy" is the share of probes whose nearest gallery
//! image is the right person. Its "FAR" counted *misidentifications* (the
//! nearest image is somebody else): with no threshold the two add up to
//! 100 % (minus detection failures). That is not the biometric FAR (share of
//! impostor attempts accepted), which is why we also show the same probes at
//! the calibrated operating threshold: correct-and-accepted, wrong-but-
//! accepted (the false acceptances a door would make) and rejected.

use std::collections::BTreeMap;

use std::fmt::Write as _;

use super::extract::Table;
use super::fnv1a;
use super::lfw::person;
use super::report::{pct, Data, SEED_SPLIT_SEED};

/// The seed report's split of LFW.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub gallery: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
}

/// Split `people` (person → images) as the report did, reproducibly for a
/// given seed.
pub fn split(people: &BTreeMap<String, Vec<String>>, seed: u64) -> Split {
    let mut s = Split {
        gallery: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
    };
    let salt = format!("{seed}/");
    for (name, imgs) in people {
        let mut v = imgs.clone();
        v.sort_by_key(|i| (fnv1a(&format!("{salt}{i}")), i.clone()));
        match v.len() {
            0 => {}
            1 => s.gallery.push(v.remove(0)),
            2 => {
                let probe = v.remove(0);
                if fnv1a(&format!("{salt}{name}")).is_multiple_of(2) {
                    s.validation.push(probe);
                } else {
                    s.test.push(probe);
                }
                s.gallery.append(&mut v);
            }
            _ => {
                s.validation.push(v.remove(0));
                s.test.push(v.remove(0));
                s.gallery.append(&mut v);
            }
        }
    }
    s
}

/// Outcome counts of 1-NN identification over one probe set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OneNn {
    pub probes: usize,
    /// No face found in the probe (counted as not identified).
    pub no_face: usize,
    /// Nearest gallery image is the right person.
    pub correct: usize,
    /// Nearest gallery image is somebody else (the report's "FAR" count).
    pub wrong: usize,
    /// At the threshold: right person and score ≥ threshold.
    pub correct_accepted: usize,
    /// At the threshold: wrong person and score ≥ threshold (a false accept).
    pub wrong_accepted: usize,
}

impl OneNn {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.probes.max(1) as f64
    }
    pub fn report_far(&self) -> f64 {
        self.wrong as f64 / self.probes.max(1) as f64
    }
}

/// The gallery as a contiguous matrix with one identity per row.
pub struct Gallery<'a> {
    dim: usize,
    rows: Vec<f32>,
    who: Vec<&'a str>,
}

impl<'a> Gallery<'a> {
    /// Gallery images whose pipeline failed (no face) are left out, as an
    /// enrolment that failed would be.
    pub fn new(images: &'a [String], t: &Table) -> Gallery<'a> {
        let mut rows = Vec::new();
        let mut who = Vec::new();
        for i in images {
            if let Some(e) = t.get(i) {
                rows.extend_from_slice(e);
                who.push(person(i));
            }
        }
        Gallery {
            dim: t.dim,
            rows,
            who,
        }
    }
    pub fn len(&self) -> usize {
        self.who.len()
    }
    pub fn is_empty(&self) -> bool {
        self.who.is_empty()
    }
    /// The nearest row (cosine of unit vectors) and its person.
    pub fn nearest(&self, y: &[f32]) -> Option<(f32, &'a str)> {
        let mut best: Option<(f32, usize)> = None;
        for (k, row) in self.rows.chunks_exact(self.dim).enumerate() {
            let s: f32 = row.iter().zip(y).map(|(a, b)| a * b).sum();
            if best.is_none_or(|b| s > b.0) {
                best = Some((s, k));
            }
        }
        best.map(|(s, k)| (s, self.who[k]))
    }
}

/// 1-NN over `probes` (embedded in `t`) against `g`, with `threshold` for
/// the accepted columns.
pub fn one_nn(g: &Gallery, probes: &[String], t: &Table, threshold: f32) -> OneNn {
    use rayon::prelude::*;
    probes
        .par_iter()
        .map(|p| {
            let mut c = OneNn {
                probes: 1,
                ..OneNn::default()
            };
            match t.get(p).and_then(|y| g.nearest(y)) {
                None => c.no_face = 1,
                Some((s, who)) => {
                    let right = who == person(p);
                    let acc = s >= threshold;
                    c.correct = right as usize;
                    c.wrong = !right as usize;
                    c.correct_accepted = (right && acc) as usize;
                    c.wrong_accepted = (!right && acc) as usize;
                }
            }
            c
        })
        .reduce(OneNn::default, |a, b| OneNn {
            probes: a.probes + b.probes,
            no_face: a.no_face + b.no_face,
            correct: a.correct + b.correct,
            wrong: a.wrong + b.wrong,
            correct_accepted: a.correct_accepted + b.correct_accepted,
            wrong_accepted: a.wrong_accepted + b.wrong_accepted,
        })
}

/// The seed report's Experiment 1 (pretrained FaceNet), from its tables
/// "Accuracy in %" and "False Acceptance Rate in %": (set, masked,
/// accuracy, FAR). Its masked sets are matched against its masked training
/// images (the KNN's fitted set), its unmasked sets against unmasked ones.
pub const SEED_REPORT_EXPERIMENT_1: [(&str, bool, f64, f64); 4] = [
    ("validation", true, 0.5389, 0.3878),
    ("validation", false, 0.1467, 0.8289),
    ("test", true, 0.5028, 0.4115),
    ("test", false, 0.1278, 0.8433),
];

/// One row of the seed-report table: probes of `table` against `gallery`.
struct SeedRow<'a> {
    probe: String,
    table: &'a Table,
    gallery_label: String,
    gallery: &'a Gallery<'a>,
    /// Which of the report's rows is comparable (masked or not), if any.
    report_masked: Option<bool>,
    threshold: f32,
}

/// The report's section: this protocol beside the seed report's Experiment 1.
pub fn section(d: &Data, tu: f32, tm: f32) -> String {
    let s = &d.seed;
    let gu = Gallery::new(&s.gallery, &d.unmasked);
    let mut r = String::new();
    let _ = writeln!(r, "\n## The seed report's protocol (1-NN over all of LFW)\n\nSplit (seed {SEED_SPLIT_SEED}), as the report describes it: people with ≥ 3 images give one image to validation and one to test, people with 2 give one to validation or test, everything else is the gallery (the report's \"train\" set, which its KNN was fitted on): {} gallery images ({} with a face found), {} validation and {} test probes. 1-NN by cosine (the report: KNN, Euclidean — the same order for unit vectors); every probe's person is in the gallery (closed set).\n\nDefinitions. The report's *accuracy* is the share of probes whose nearest gallery image is the right person; its *FAR* is FP/(TP+FP+TN+FN), i.e. the share of probes given *somebody else's* name (a misidentification rate), so accuracy + FAR + (no answer) = 100 %. That is not the biometric FAR of the tables above (the share of impostor attempts accepted, at a threshold): 1-NN without a threshold names somebody for every probe. The last two columns put the same probes through the calibrated thresholds ({tu:.4} unmasked, {tm:.4} masked probe), as the daemon would.\n", s.gallery.len(), gu.len(), s.validation.len(), s.test.len());
    let _ = writeln!(r, "| set | probes | gallery | report accuracy | report FAR | accuracy (1-NN) | FAR, report's sense (misidentified) | no face | right & accepted | wrong & accepted |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mg = d
        .masked
        .first()
        .map(|(l, t)| (l.clone(), Gallery::new(&s.gallery, t)));
    for name in ["validation", "test"] {
        let probes = if name == "validation" {
            &s.validation
        } else {
            &s.test
        };
        let mut rows = vec![SeedRow {
            probe: "unmasked".into(),
            table: &d.unmasked,
            gallery_label: "unmasked".into(),
            gallery: &gu,
            report_masked: Some(false),
            threshold: tu,
        }];
        if let Some((l, g)) = &mg {
            rows.push(SeedRow {
                probe: format!("masked ({l})"),
                table: &d.masked[0].1,
                gallery_label: format!("masked ({l})"),
                gallery: g,
                report_masked: Some(true),
                threshold: tm,
            });
        }
        for (l, t) in &d.masked {
            rows.push(SeedRow {
                probe: format!("masked ({l})"),
                table: t,
                gallery_label: "unmasked (the door)".into(),
                gallery: &gu,
                report_masked: None,
                threshold: tm,
            });
        }
        for row in rows {
            let g = row.gallery;
            let c = one_nn(g, probes, row.table, row.threshold);
            let rep = row.report_masked.and_then(|m| {
                SEED_REPORT_EXPERIMENT_1
                    .iter()
                    .find(|x| x.0 == name && x.1 == m)
            });
            let (ra, rf) = rep.map_or(("-".to_string(), "-".to_string()), |x| (pct(x.2), pct(x.3)));
            let n = c.probes.max(1) as f64;
            let _ = writeln!(
                r,
                "| {name}, {} | {} | {} ({} images) | {ra} | {rf} | {} | {} | {} | {} | {} |",
                row.probe,
                c.probes,
                row.gallery_label,
                g.len(),
                pct(c.accuracy()),
                pct(c.report_far()),
                pct(c.no_face as f64 / n),
                pct(c.correct_accepted as f64 / n),
                pct(c.wrong_accepted as f64 / n)
            );
        }
    }
    let _ = writeln!(r, "\nThe report's numbers sit on the rows comparable with its setup: unmasked probes against unmasked gallery images, masked probes against *masked* gallery images (its masked set was the Simulated Masked Face Recognition Dataset, masks painted on LFW; ours are our renderers). The rows \"masked vs unmasked (the door)\" are the product's case: a person enrolled without a mask, seen with one. The report fitted its KNN on the same images its model was fine-tuned on, and its splits share identities with training; Experiment 1 used a Keras FaceNet pre-trained on MS-Celeb-1M (not ours: davidsandberg 20180408-102900, CASIA-WebFace), on its own crops.\n");
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::extract::Status;
    use std::collections::HashMap;

    fn people(counts: &[(&str, usize)]) -> BTreeMap<String, Vec<String>> {
        counts
            .iter()
            .map(|(p, n)| {
                (
                    p.to_string(),
                    (1..=*n).map(|k| format!("{p}/{p}_{k:04}.jpg")).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn split_follows_the_report_rules_and_is_reproducible() {
        let ppl = people(&[("A", 1), ("B", 2), ("C", 3), ("D", 7), ("E", 2), ("F", 2)]);
        let s = split(&ppl, 1);
        assert_eq!(s, split(&ppl, 1));
        let count = |v: &[String], p: &str| v.iter().filter(|i| person(i) == p).count();
        for (p, imgs) in &ppl {
            let (g, v, t) = (
                count(&s.gallery, p),
                count(&s.validation, p),
                count(&s.test, p),
            );
            assert_eq!(g + v + t, imgs.len(), "{p}: nothing lost or doubled");
            match imgs.len() {
                1 => assert_eq!((g, v, t), (1, 0, 0)),
                2 => assert!(g == 1 && v + t == 1, "{p}"),
                n => assert_eq!((g, v, t), (n - 2, 1, 1)),
            }
        }
        let mut all: Vec<_> = s
            .gallery
            .iter()
            .chain(&s.validation)
            .chain(&s.test)
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 17, "disjoint");
        // Another seed picks other images for someone with 7.
        let o = split(&ppl, 2);
        assert!(o != s);
    }

    fn table(rows: &[(&str, Option<[f32; 2]>)]) -> Table {
        let mut t = Table {
            dim: 2,
            index: HashMap::new(),
            status: Vec::new(),
            skin: Vec::new(),
            emb: Vec::new(),
        };
        for (i, (name, e)) in rows.iter().enumerate() {
            t.index.insert(name.to_string(), i);
            t.status.push(if e.is_some() {
                Status::Ok
            } else {
                Status::NoFace
            });
            t.skin.push(1.0);
            t.emb.extend_from_slice(&e.unwrap_or([0.0, 0.0]));
        }
        t
    }

    #[test]
    fn one_nn_counts_correct_wrong_and_failures() {
        let t = table(&[
            ("A/A_0001.jpg", Some([1.0, 0.0])),
            ("B/B_0001.jpg", Some([0.0, 1.0])),
            ("A/A_0002.jpg", Some([0.9, 0.436])), // nearest A, 0.9
            ("B/B_0002.jpg", Some([0.8, 0.6])),   // nearest A (wrong), 0.8
            ("A/A_0003.jpg", Some([0.6, 0.8])),   // nearest B (wrong), 0.8
            ("B/B_0003.jpg", Some([0.1, 0.995])), // nearest B, 0.995
            ("C/C_0001.jpg", None),               // no face
        ]);
        let gal = ["A/A_0001.jpg".to_string(), "B/B_0001.jpg".to_string()];
        let g = Gallery::new(&gal, &t);
        assert_eq!(g.len(), 2);
        let probes: Vec<String> = [
            "A/A_0002.jpg",
            "B/B_0002.jpg",
            "A/A_0003.jpg",
            "B/B_0003.jpg",
            "C/C_0001.jpg",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = one_nn(&g, &probes, &t, 0.85);
        assert_eq!(
            r,
            OneNn {
                probes: 5,
                no_face: 1,
                correct: 2,
                wrong: 2,
                correct_accepted: 2,
                wrong_accepted: 0,
            }
        );
        assert!((r.accuracy() - 0.4).abs() < 1e-12);
        assert!((r.report_far() - 0.4).abs() < 1e-12);
        let r = one_nn(&g, &probes, &t, 0.75);
        assert_eq!((r.correct_accepted, r.wrong_accepted), (2, 2));
    }
}
