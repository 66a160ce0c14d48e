//! `facegate eval lfw`: every protocol, then `report.md`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use super::calibrate::{thresholds_toml, Calibrated};
use super::extract::{score, Front, Model, Renderer, Table, FAIL_SCORE};
use super::lfw::{person, Lfw, Pair};
use super::stats::{eer, rate_at_or_above, roc, sort_desc, tar_at_far, ten_fold, threshold_at_far};
use super::{io_err, plot, EvalError};

/// What `facegate eval lfw` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub data: PathBuf,
    pub out: PathBuf,
    pub models: PathBuf,
    pub bundle: String,
    pub detector: String,
    /// Mask renderers (`procedural`, `templates:<dir>`), first = main.
    pub masks: Vec<String>,
    /// Bundle compared against the main one (e.g. fp32), if any.
    pub compare: Option<String>,
    pub target_far: f64,
    pub cache: PathBuf,
    pub threads: usize,
    /// Detect on a copy downscaled to this longer side (None: the daemon's
    /// default), to measure what `[models] detect_max_side` costs.
    pub detect_max_side: Option<u32>,
    /// Restrict every protocol to the pairs of these folds (0-based) and
    /// their people (None: all ten folds).
    pub folds: Option<Vec<usize>>,
    /// Evaluate periocular crops (grey below this many IODs under the eyes)
    /// instead of whole faces, for every condition (None: whole faces).
    pub periocular: Option<f32>,
    /// The command line, for the report.
    pub command: String,
}

/// A second bundle: (name, unmasked table, [(renderer, masked table)]).
pub type Compared = (String, Table, Vec<(String, Table)>);

/// Embeddings of every condition needed.
pub struct Data {
    pub lfw: Lfw,
    pub unmasked: Table,
    /// (renderer label, table over the pair images [+ calibration images for the first])
    pub masked: Vec<(String, Table)>,
    pub compare: Option<Compared>,
    pub calibration_images: Vec<String>,
    /// The seed report's split (gallery = every other LFW image).
    pub seed: super::seed::Split,
    /// Periocular embeddings of the unmasked and masked images, when the
    /// bundle compares masked probes as periocular crops (the mixed rule).
    pub periocular: Option<super::presence::PeriocularData>,
}

/// Seed of the seed-report split (fixed: the figures must be reproducible).
pub const SEED_SPLIT_SEED: u64 = 2020;

/// Calibration images per person.
pub const CAL_PER_PERSON: usize = 6;

/// Compute (or load from the cache) every embedding the protocols need.
pub fn extract_all(o: &Options) -> Result<(Data, Model, String), EvalError> {
    let mut lfw = Lfw::open(&o.data)?;
    if let Some(f) = &o.folds {
        lfw.restrict_to_folds(f);
        if lfw.pairs.is_empty() {
            return Err(EvalError::Other(format!("no pair in folds {f:?}")));
        }
    }
    let front = Front::new(
        &lfw,
        &o.models,
        &o.detector,
        &o.cache,
        o.threads,
        o.detect_max_side,
    )?;
    let mut model = Model::load(&o.models, &o.bundle)?;
    if let Some(cut) = o.periocular {
        model = model.with_periocular(cut);
    }
    let renderers: Vec<Renderer> = o
        .masks
        .iter()
        .map(|s| Renderer::parse(s))
        .collect::<Result<_, _>>()?;
    let pair_images = lfw.pair_images();
    // Calibration data: images outside the pairs (never in a reported
    // figure), at most CAL_PER_PERSON per person so a few prolific people
    // do not dominate the genuine pairs.
    let in_pairs: std::collections::HashSet<&String> = pair_images.iter().collect();
    let cal_images: Vec<String> = lfw
        .people
        .values()
        .flat_map(|v| {
            v.iter()
                .filter(|i| !in_pairs.contains(i))
                .take(CAL_PER_PERSON)
                .cloned()
        })
        .collect();
    let mut both = pair_images.clone();
    both.extend(cal_images.iter().cloned());
    // The seed report's protocol needs every LFW image unmasked (gallery)
    // and its validation/test probes masked.
    let seed = super::seed::split(&lfw.people, SEED_SPLIT_SEED);
    let mut seed_probes = seed.validation.clone();
    seed_probes.extend(seed.test.iter().cloned());
    let with_probes = |base: &[String]| {
        let mut v = base.to_vec();
        v.extend(seed_probes.iter().cloned());
        v.sort();
        v.dedup();
        v
    };
    // Order: the headline figures first, then calibration, so an
    // interrupted run has the most useful part cached.
    let _ = front.extract(&model, &Renderer::Unmasked, &pair_images)?;
    let mut masked = Vec::new();
    if let Some(r) = renderers.first() {
        masked.push((
            r.label().to_string(),
            front.extract(&model, r, &pair_images)?,
        ));
    }
    let _ = front.extract(&model, &Renderer::Unmasked, &both)?;
    if let Some(r) = renderers.first() {
        masked[0].1 = front.extract(&model, r, &both)?;
    }
    for r in renderers.iter().skip(1) {
        masked.push((
            r.label().to_string(),
            front.extract(&model, r, &pair_images)?,
        ));
    }
    // Then the seed report's protocol (last: the least important figures).
    let unmasked = front.extract(&model, &Renderer::Unmasked, &lfw.images)?;
    for (k, (r, m)) in renderers.iter().zip(masked.iter_mut()).enumerate() {
        let mut base: Vec<String> = m.1.index.keys().cloned().collect();
        if k == 0 {
            // The report's masked setup matches masked probes against
            // masked gallery images: the first renderer covers those too.
            base.extend(seed.gallery.iter().cloned());
        }
        m.1 = front.extract(&model, r, &with_probes(&base))?;
    }
    let compare = match &o.compare {
        Some(spec) => {
            // `NAME` or `NAME:unmasked` (skip the masked condition).
            let (c, only_unmasked) = match spec.strip_suffix(":unmasked") {
                Some(c) => (c.to_string(), true),
                None => (spec.clone(), false),
            };
            let cm = Model::load(&o.models, &c)?;
            let u = front.extract(&cm, &Renderer::Unmasked, &pair_images)?;
            let mut ms = Vec::new();
            if let Some(r) = renderers.first().filter(|_| !only_unmasked) {
                ms.push((r.label().to_string(), front.extract(&cm, r, &pair_images)?));
            }
            Some((c, u, ms))
        }
        None => None,
    };
    // The mixed rule as deployed (issue 14 §6): masked probes compared as
    // periocular crops need the periocular embeddings of the same images.
    let periocular = match model.periocular_mode.filter(|_| o.periocular.is_none()) {
        Some(mode) => {
            let pm = Model::load(&o.models, &o.bundle)?.with_periocular(mode.cut);
            let unmasked = front.extract(&pm, &Renderer::Unmasked, &both)?;
            let mut ms = Vec::new();
            for (k, r) in renderers.iter().enumerate() {
                let imgs = if k == 0 { &both } else { &pair_images };
                ms.push((r.label().to_string(), front.extract(&pm, r, imgs)?));
            }
            Some(super::presence::PeriocularData {
                mode,
                unmasked,
                masked: ms,
            })
        }
        None => None,
    };
    let mut det = format!("{} (sha256 {})", front.detector_name, front.detector_sha);
    if let Some(m) = o.detect_max_side {
        det.push_str(&format!(", detecting at max side {m} px"));
    }
    Ok((
        Data {
            lfw,
            unmasked,
            masked,
            compare,
            calibration_images: cal_images,
            seed,
            periocular,
        },
        model,
        det,
    ))
}

/// Pair scores of one condition: enrolment `a` from `ta`, probe `b` from `tb`.
pub fn pair_scores(pairs: &[Pair], ta: &Table, tb: &Table) -> Vec<(f32, bool, usize)> {
    pairs
        .iter()
        .map(|p| (score(ta, &p.a, tb, &p.b), p.same, p.fold))
        .collect()
}

/// Every pair i < j of `images`: enrolment i from `ta`, probe j from `tb`.
/// Returns (genuine scores, impostor scores).
pub fn all_pairs(images: &[String], ta: &Table, tb: &Table) -> (Vec<f32>, Vec<f32>) {
    all_pairs_multi(images, &[ta], tb)
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// As [`all_pairs`], with several enrolment templates per image (one per
/// table in `enrol`): the score is the best over the templates (how the
/// gallery scan decides). A failed template is skipped; no template or a
/// failed probe gives [`FAIL_SCORE`].
pub fn all_pairs_multi(images: &[String], enrol: &[&Table], tb: &Table) -> (Vec<f32>, Vec<f32>) {
    let n = images.len();
    let ea: Vec<Vec<&[f32]>> = images
        .iter()
        .map(|i| enrol.iter().filter_map(|t| t.get(i)).collect())
        .collect();
    let eb: Vec<Option<&[f32]>> = images.iter().map(|i| tb.get(i)).collect();
    let who: Vec<&str> = images.iter().map(|i| person(i)).collect();
    let parts: Vec<(Vec<f32>, Vec<f32>)> = (1..n)
        .into_par_iter()
        .map(|j| {
            let (mut g, mut im) = (Vec::new(), Vec::with_capacity(j));
            for i in 0..j {
                let s = match eb[j] {
                    Some(y) => ea[i].iter().map(|x| dot(x, y)).fold(FAIL_SCORE, f32::max),
                    None => FAIL_SCORE,
                };
                if who[i] == who[j] {
                    g.push(s);
                } else {
                    im.push(s);
                }
            }
            (g, im)
        })
        .collect();
    let mut g = Vec::new();
    let mut im = Vec::with_capacity(n * n / 2);
    for (a, b) in parts {
        g.extend(a);
        im.extend(b);
    }
    (g, im)
}

/// Enrolment strategies on every pair among the pair images, at the
/// calibrated thresholds `tu` (unmasked probe) and `tm` (masked probe).
fn enrolment_section(o: &Options, d: &Data, images: &[String], tu: f32, tm: f32) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "## Enrolment strategies (every pair among the pair images)
"
    );
    let _ = writeln!(r, "Enrolment image i, probe image j (i < j). *Unmasked only*: one template per enrolment, the unmasked image. *+ synthetic masked*: also a template of the enrolment image with a procedural mask painted on it (the daemon's enrolment augmentation), the score is the best of the two. *Presence-chosen threshold*: unmasked-only templates; the probe's mask presence (skin share < {}) picks the calibrated masked threshold {tm:.4}, else the unmasked threshold {tu:.4}. FAR/FRR columns are at those calibrated thresholds; a probe set is all unmasked or all masked probes.\n", crate::face::presence::DEFAULT_THRESHOLD);
    let _ = writeln!(r, "| probes | enrolment | TAR @ FAR 1e-3 | TAR @ 1e-4 | EER | threshold rule | FAR | FRR |\n| --- | --- | --- | --- | --- | --- | --- | --- |");
    let aug = d.masked.first().map(|m| &m.1);
    let mut probes: Vec<(String, &Table)> = vec![("unmasked".into(), &d.unmasked)];
    for (l, t) in &d.masked {
        probes.push((format!("masked ({l})"), t));
    }
    for (pl, pt) in probes {
        // Presence of each probe picks its threshold.
        let thr: Vec<f32> = images
            .iter()
            .map(|j| match pt.skin(j) {
                Some(s) if s < crate::face::presence::DEFAULT_THRESHOLD => tm,
                _ => tu,
            })
            .collect();
        let masked_share =
            thr.iter().filter(|&&t| t == tm).count() as f64 / thr.len().max(1) as f64;
        let mut strategies: Vec<(&str, Vec<&Table>)> = vec![("unmasked only", vec![&d.unmasked])];
        if let Some(a) = aug {
            strategies.push(("+ synthetic masked (procedural)", vec![&d.unmasked, a]));
        }
        for (el, enrol) in strategies {
            let (gen, mut imp) = o_pool(o.threads, || all_pairs_multi(images, &enrol, pt));
            let e = eer(&gen, &imp);
            sort_desc(&mut imp);
            let t3 = tar_at_far(&gen, &imp, 1e-3).0;
            let t4 = tar_at_far(&gen, &imp, 1e-4).0;
            let at = |t: f32| {
                (
                    imp.partition_point(|&s| s >= t) as f64 / imp.len().max(1) as f64,
                    1.0 - rate_at_or_above(&gen, t),
                )
            };
            let (fu, ru) = at(tu);
            let (fm, rm) = at(tm);
            let _ = writeln!(
                r,
                "| {pl} | {el} | {} | {} | {} | unmasked threshold | {fu:.2e} | {} |",
                pct(t3),
                pct(t4),
                pct(e),
                pct(ru)
            );
            let _ = writeln!(r, "| | | | | | masked threshold | {fm:.2e} | {} |", pct(rm));
            if el == "unmasked only" {
                // Presence-chosen: per-probe threshold, counted directly.
                let (ga, gn, ia, inn) = presence_counts(images, &d.unmasked, pt, &thr);
                let _ = writeln!(
                    r,
                    "| | | | | | presence-chosen ({} of probes judged masked) | {:.2e} | {} |",
                    pct(masked_share),
                    ia as f64 / inn.max(1) as f64,
                    pct(1.0 - ga as f64 / gn.max(1) as f64)
                );
            }
        }
    }
    r
}

/// Accepted genuine / impostor counts with a per-probe threshold.
fn presence_counts(
    images: &[String],
    ta: &Table,
    tb: &Table,
    thr: &[f32],
) -> (usize, usize, usize, usize) {
    let who: Vec<&str> = images.iter().map(|i| person(i)).collect();
    (1..images.len())
        .into_par_iter()
        .map(|j| {
            let mut c = (0, 0, 0, 0);
            let Some(y) = tb.get(&images[j]) else {
                for i in 0..j {
                    if who[i] == who[j] {
                        c.1 += 1
                    } else {
                        c.3 += 1
                    }
                }
                return c;
            };
            for i in 0..j {
                let s = ta.get(&images[i]).map_or(FAIL_SCORE, |x| dot(x, y));
                let acc = s >= thr[j];
                if who[i] == who[j] {
                    c.1 += 1;
                    c.0 += acc as usize;
                } else {
                    c.3 += 1;
                    c.2 += acc as usize;
                }
            }
            c
        })
        .reduce(
            || (0, 0, 0, 0),
            |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3),
        )
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

struct Cond<'a> {
    name: String,
    renderer: &'a str,
    ta: &'a Table,
    tb: &'a Table,
}

pub fn run(o: &Options) -> Result<(), EvalError> {
    let t_start = Instant::now();
    let (d, model, det) = extract_all(o)?;
    let t_extract = t_start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&o.out).map_err(io_err(&o.out))?;
    let mut r = String::new();
    let pairs = &d.lfw.pairs;
    let pair_images = d.lfw.pair_images();
    let _ = writeln!(r, "# facegate LFW evaluation\n");
    let _ = writeln!(r, "- command: `{}`", o.command);
    let _ = writeln!(
        r,
        "- embedder: `{}` model sha256 `{}`",
        model.name, model.sha256
    );
    let _ = writeln!(r, "- detector: {det}");
    let _ = writeln!(
        r,
        "- pipeline version {}; masks: {}",
        super::PIPELINE_VERSION,
        o.masks.join(", ")
    );
    let _ = writeln!(r, "- machine: {}", machine());
    if let Some(f) = &o.folds {
        let list: Vec<String> = f.iter().map(|k| (k + 1).to_string()).collect();
        let _ = writeln!(
            r,
            "- folds: {} only (their pairs and every image of their people; nobody else)",
            list.join(",")
        );
    }
    let _ = writeln!(
        r,
        "- data: {} images of {} people; pairs.txt {} pairs ({} images)",
        d.lfw.images.len(),
        d.lfw.people.len(),
        pairs.len(),
        pair_images.len()
    );
    let _ = writeln!(
        r,
        "- embedding extraction {:.0} s (0 when everything was cached)\n",
        t_extract
    );
    let _ = writeln!(r, "Pipeline: detect (RetinaFace, largest face) → align → mask presence → embed. A masked probe is made by painting a mask (seeded by the image name) on the original image at the detected landmarks, then running the whole pipeline again on the masked image. A face the detector misses gets score {FAIL_SCORE} (a non-match at every threshold) and is counted below. M-U: enrolment = first image of the pair unmasked, probe = second image masked.\n");
    // Failures.
    let _ = writeln!(r, "## Detection failures (pair images)\n\n| condition | images | failures |\n| --- | --- | --- |");
    let fails = |t: &Table| pair_images.iter().filter(|i| t.get(i).is_none()).count();
    let _ = writeln!(
        r,
        "| unmasked | {} | {} |",
        pair_images.len(),
        fails(&d.unmasked)
    );
    for (l, t) in &d.masked {
        let _ = writeln!(r, "| {l} | {} | {} |", pair_images.len(), fails(t));
    }
    // Conditions.
    let mut conds = vec![Cond {
        name: "U-U".into(),
        renderer: "-",
        ta: &d.unmasked,
        tb: &d.unmasked,
    }];
    for (l, t) in &d.masked {
        conds.push(Cond {
            name: "M-U".into(),
            renderer: l,
            ta: &d.unmasked,
            tb: t,
        });
        conds.push(Cond {
            name: "M-M".into(),
            renderer: l,
            ta: t,
            tb: t,
        });
    }
    let _ = writeln!(
        r,
        "\n## LFW pairs (pairs.txt: 3,000 genuine, 3,000 impostor)\n"
    );
    let _ = writeln!(r, "10-fold accuracy: threshold chosen on 9 folds, tested on the 10th (folds are person-disjoint). TAR at FAR from the 3,000 impostor pairs: FAR 1e-3 means at most 3 impostors accepted, FAR 1e-4 means none (floor(1e-4 × 3000) = 0), so that column is 'no impostor accepted'.\n");
    let _ = writeln!(r, "| condition | masks | 10-fold accuracy | ± std | mean threshold | TAR @ FAR 1e-2 | TAR @ 1e-3 | TAR @ 1e-4 | EER |");
    let _ = writeln!(r, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut summary: HashMap<String, f64> = HashMap::new();
    for c in &conds {
        let s = pair_scores(pairs, c.ta, c.tb);
        let (m, sd, t) = ten_fold(&s);
        let gen: Vec<f32> = s.iter().filter(|p| p.1).map(|p| p.0).collect();
        let mut imp: Vec<f32> = s.iter().filter(|p| !p.1).map(|p| p.0).collect();
        let e = eer(&gen, &imp);
        sort_desc(&mut imp);
        let tars: Vec<f64> = [1e-2, 1e-3, 1e-4]
            .iter()
            .map(|&f| tar_at_far(&gen, &imp, f).0)
            .collect();
        summary.insert(format!("{} {}", c.name, c.renderer), m);
        let _ = writeln!(
            r,
            "| {} | {} | {} | {:.2} | {:.3} | {} | {} | {} | {} |",
            c.name,
            c.renderer,
            pct(m),
            100.0 * sd,
            t,
            pct(tars[0]),
            pct(tars[1]),
            pct(tars[2]),
            pct(e)
        );
    }
    // Large impostor set.
    let _ = writeln!(
        r,
        "\n## Large impostor set: every pair among the {} pair images\n",
        pair_images.len()
    );
    let mut big_rows = String::new();
    let mut curves: HashMap<String, Vec<Vec<(f64, f64)>>> = HashMap::new();
    let mut n_imp = 0usize;
    for c in &conds {
        let t0 = Instant::now();
        let (gen, mut imp) = o_pool(o.threads, || all_pairs(&pair_images, c.ta, c.tb));
        n_imp = imp.len();
        let e = eer(&gen, &imp);
        sort_desc(&mut imp);
        let tars: Vec<(f64, f32)> = [1e-2, 1e-3, 1e-4, 1e-5]
            .iter()
            .map(|&f| {
                let x = tar_at_far(&gen, &imp, f);
                (x.0, x.1)
            })
            .collect();
        let _ = writeln!(
            big_rows,
            "| {} | {} | {} | {} | {} ({:.3}) | {} ({:.3}) | {} ({:.3}) | {} ({:.3}) | {} |",
            c.name,
            c.renderer,
            gen.len(),
            imp.len(),
            pct(tars[0].0),
            tars[0].1,
            pct(tars[1].0),
            tars[1].1,
            pct(tars[2].0),
            tars[2].1,
            pct(tars[3].0),
            tars[3].1,
            pct(e)
        );
        let key = if c.renderer == "-" {
            "all".to_string()
        } else {
            c.renderer.to_string()
        };
        let pts = roc(&gen, &imp, 200);
        curves.entry(key.clone()).or_default().push(pts.clone());
        if c.name == "U-U" {
            for (l, _) in &d.masked {
                curves.entry(l.clone()).or_default().push(pts.clone());
            }
        }
        if c.name == "M-U" || c.name == "U-U" {
            let f = format!("scores-{}-{}.png", c.name, key);
            plot::histograms(&o.out.join(&f), &[&gen, &imp], -0.4, 1.0, 140)?;
        }
        log::info!(
            "{} {}: all pairs in {:.1} s",
            c.name,
            c.renderer,
            t0.elapsed().as_secs_f64()
        );
    }
    let _ = writeln!(r, "{n_imp} impostor pairs (the resolution of FAR 1e-5 is {:.0} accepted impostors); genuine = every same-person pair among them. Cells: TAR (threshold).\n", n_imp as f64 * 1e-5);
    let _ = writeln!(r, "| condition | masks | genuine | impostors | TAR @ FAR 1e-2 | TAR @ 1e-3 | TAR @ 1e-4 | TAR @ 1e-5 | EER |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n{big_rows}");
    for (l, _) in &d.masked {
        let f = format!("roc-{l}.png");
        if let Some(cs) = curves.get(l) {
            // U-U first (pushed before the masked conditions? order: U-U copy, M-U, M-M)
            plot::roc(&o.out.join(&f), cs, -6, 0.0)?;
            let _ = writeln!(r, "![ROC {l}]({f})\n\nROC, large impostor set, masks {l}: x = FAR, log axis, 1e-6 … 1 (grid line per decade); y = TAR 0 … 1 (grid per 0.1). Blue U-U, red M-U, green M-M.\n");
        }
    }
    for (l, _) in &d.masked {
        let _ = writeln!(r, "![scores M-U {l}](scores-M-U-{l}.png)\n\nScore distributions, M-U with {l} masks, x = cosine −0.4 … 1 (grid per 0.1), each curve scaled to its peak: blue genuine, red impostor.\n");
    }
    let _ = writeln!(
        r,
        "![scores U-U](scores-U-U-all.png)\n\nScore distributions U-U (as above).\n"
    );
    // Compare bundle.
    if let Some((name, u, ms)) = &d.compare {
        let _ = writeln!(r, "## {} vs {} (quantisation cost, pairs.txt)\n\n| bundle | condition | 10-fold accuracy | TAR @ FAR 1e-3 (3,000 impostors) | EER |\n| --- | --- | --- | --- | --- |", model.name, name);
        let mut rows = vec![
            (
                model.name.clone(),
                "U-U".to_string(),
                &d.unmasked,
                &d.unmasked,
            ),
            (name.clone(), "U-U".to_string(), u, u),
        ];
        for ((l, t), (_, ct)) in d.masked.iter().zip(ms) {
            rows.push((model.name.clone(), format!("M-U {l}"), &d.unmasked, t));
            rows.push((name.clone(), format!("M-U {l}"), u, ct));
        }
        for (b, c, ta, tb) in rows {
            let s = pair_scores(pairs, ta, tb);
            let gen: Vec<f32> = s.iter().filter(|p| p.1).map(|p| p.0).collect();
            let mut imp: Vec<f32> = s.iter().filter(|p| !p.1).map(|p| p.0).collect();
            let e = eer(&gen, &imp);
            sort_desc(&mut imp);
            let _ = writeln!(
                r,
                "| {b} | {c} | {} | {} | {} |",
                pct(ten_fold(&s).0),
                pct(tar_at_far(&gen, &imp, 1e-3).0),
                pct(e)
            );
        }
        let _ = writeln!(r);
    }
    // Calibration.
    let cal_images = &d.calibration_images;
    let cal_people = cal_images
        .iter()
        .map(|i| person(i))
        .collect::<std::collections::HashSet<_>>()
        .len();
    if let Some((l, mt)) = d.masked.first() {
        let (gu, mut iu) = o_pool(o.threads, || {
            all_pairs(cal_images, &d.unmasked, &d.unmasked)
        });
        let (gm, mut im) = o_pool(o.threads, || all_pairs(cal_images, &d.unmasked, mt));
        sort_desc(&mut iu);
        sort_desc(&mut im);
        let cal = |g: &[f32], i: &[f32]| {
            let (t, far) = threshold_at_far(i, o.target_far);
            Calibrated {
                threshold: t,
                far_target: o.target_far,
                far,
                frr: 1.0 - rate_at_or_above(g, t),
                genuine: g.len(),
                impostors: i.len(),
            }
        };
        let (cu, cm) = (cal(&gu, &iu), cal(&gm, &im));
        // The same thresholds on the reported (pairs) data.
        let (pg, mut pi) = o_pool(o.threads, || {
            all_pairs(&pair_images, &d.unmasked, &d.unmasked)
        });
        let (pgm, mut pim) = o_pool(o.threads, || all_pairs(&pair_images, &d.unmasked, mt));
        sort_desc(&mut pi);
        sort_desc(&mut pim);
        let far_at =
            |i: &[f32], t: f32| i.partition_point(|&s| s >= t) as f64 / i.len().max(1) as f64;
        let _ = writeln!(r, "## Calibrated thresholds (target FAR {:e} per attempt)\n\nChosen on {} images of {} people that are not among the pair images (at most {CAL_PER_PERSON} per person) — none of the figures above uses them; the people may also appear in pairs (LFW has too few people with several images outside the pairs for a person-disjoint set: 52). Masked probes: {l} masks, against unmasked enrolment. Then checked on the pair images (every pair, as above).\n", o.target_far, cal_images.len(), cal_people);
        let _ = writeln!(r, "| probe | threshold | calibration genuine / impostors | FAR (calibration) | FRR (calibration) | FAR (pair images) | FRR (pair images) |\n| --- | --- | --- | --- | --- | --- | --- |");
        let _ = writeln!(
            r,
            "| unmasked | {:.4} | {} / {} | {:.2e} | {} | {:.2e} | {} |",
            cu.threshold,
            cu.genuine,
            cu.impostors,
            cu.far,
            pct(cu.frr),
            far_at(&pi, cu.threshold),
            pct(1.0 - rate_at_or_above(&pg, cu.threshold))
        );
        let _ = writeln!(
            r,
            "| masked | {:.4} | {} / {} | {:.2e} | {} | {:.2e} | {} |\n",
            cm.threshold,
            cm.genuine,
            cm.impostors,
            cm.far,
            pct(cm.frr),
            far_at(&pim, cm.threshold),
            pct(1.0 - rate_at_or_above(&pgm, cm.threshold))
        );
        // Identification (issue 15): the per-person impostor tail.
        let ident_cal = o_pool(o.threads, || {
            let mut u = super::ident::per_person_impostors(cal_images, &d.unmasked, &d.unmasked);
            let mut m = super::ident::per_person_impostors(cal_images, &d.unmasked, mt);
            sort_desc(&mut u);
            sort_desc(&mut m);
            super::ident::table(&u, &m).map(|table| super::ident::Calibration {
                table,
                unmasked_desc: u,
                masked_desc: m,
            })
        });
        match &ident_cal {
            Some(c) => r.push_str(&super::ident::calibration_section(
                &c.table,
                (c.unmasked_desc.len(), c.masked_desc.len()),
                cal_images.len(),
            )),
            None => {
                let _ = writeln!(r, "## Identification thresholds for the gallery's size\n\nToo few calibration images to measure a per-person FAR of 1e-1: no identification table written.\n");
            }
        }
        let toml = thresholds_toml(
            &model.name,
            &model.sha256,
            &cu,
            &cm,
            cal_images.len(),
            cal_people,
            l,
            ident_cal
                .as_ref()
                .map(|c| (&c.table, c.unmasked_desc.len().min(c.masked_desc.len()))),
        );
        let p = o.out.join("thresholds.toml");
        std::fs::write(&p, toml).map_err(io_err(&p))?;
        let _ = writeln!(r, "Written to `thresholds.toml` (copy to `models/thresholds.toml` for the models pipeline).\n");
        r.push_str(&o_pool(o.threads, || {
            super::ident::open_set_section(&d, &pair_images, ident_cal.as_ref())
        }));
        r.push_str(&o_pool(o.threads, || {
            enrolment_section(o, &d, &pair_images, cu.threshold, cm.threshold)
        }));
        r.push_str(&o_pool(o.threads, || {
            presence_section(&d, &model, &pair_images, cu.threshold, cm.threshold)
        }));
        r.push_str(&o_pool(o.threads, || {
            super::seed::section(&d, cu.threshold, cm.threshold)
        }));
    }
    let _ = writeln!(r, "Total time {:.0} s.", t_start.elapsed().as_secs_f64());
    let p = o.out.join("report.md");
    std::fs::write(&p, &r).map_err(io_err(&p))?;
    println!("{r}");
    let _ = summary;
    Ok(())
}

/// Mask presence: the skin rule and the bundle's classifier, and the mixed
/// rule as deployed on the calibration and the pair images.
fn presence_section(d: &Data, model: &Model, pair_images: &[String], tu: f32, tm: f32) -> String {
    use super::presence::{section, MixedThresholds, Probes};
    let peri = d.periocular.as_ref();
    let mut probes = vec![(
        "bare".to_string(),
        Probes {
            whole: &d.unmasked,
            periocular: peri.map(|p| &p.unmasked),
        },
    )];
    for (k, (l, t)) in d.masked.iter().enumerate() {
        probes.push((
            format!("masked ({l})"),
            Probes {
                whole: t,
                periocular: peri.and_then(|p| p.masked.get(k)).map(|m| &m.1),
            },
        ));
    }
    section(
        model.presence.as_ref(),
        pair_images,
        (&d.unmasked, peri.map(|p| &p.unmasked)),
        &probes,
        &[
            ("calibration", &d.calibration_images),
            ("pair images", pair_images),
        ],
        MixedThresholds {
            unmasked: tu,
            masked: tm,
            periocular: peri.map(|p| p.mode.threshold),
        },
    )
}

fn o_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(p) => p.install(f),
        Err(_) => f(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{cpu}, {cores} cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
