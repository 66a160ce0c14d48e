//! `facegate eval m2fred`: real masks (issue 14 §5).
//!
//! The M2FRED subset is `<person>/<S>-<F>-0.png`, 128×128 face crops, `F`
//! = 1 with a real mask, 0 without. It is research-only: read from the
//! folder given at run time, nothing derived from it is written except the
//! report's numbers.
//!
//! Protocols: masked probe vs unmasked enrolment (M-U) and unmasked vs
//! unmasked (U-U). Genuine pairs: a probe vs every unmasked image of the
//! same person other than itself; impostors: a probe vs every unmasked
//! image of every other person. A failed detection scores
//! [`FAIL_SCORE`] (a non-match at every threshold), never dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;

use super::extract::{Model, FAIL_SCORE};
use super::stats::{eer, rate_at_or_above, sort_desc, tar_at_far};
use super::{io_err, EvalError};
use crate::bundle::{Bundle, Thresholds};
use crate::face::align::align;
use crate::face::detect::{largest, Detector, DetectorOptions, Face, TractDetector};
use crate::face::embed::{cosine, Embedder};
use crate::face::presence;

/// One image of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub person: String,
    /// `<S>`, the capture number.
    pub capture: String,
    pub masked: bool,
    /// `<person>/<file>`, relative to the data folder.
    pub rel: String,
}

/// Labels of a file name `<S>-<F>-0.png`: (capture, masked). `None` for a
/// name of another form.
pub fn parse_name(file: &str) -> Option<(String, bool)> {
    let stem = file.strip_suffix(".png")?;
    let mut it = stem.split('-');
    let (s, f, z) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || z != "0" || s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let masked = match f {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    Some((s.to_string(), masked))
}

/// Every image of `dir`, sorted by person then file. Refuses a folder
/// that is missing, holds a file of another form, or has a person without
/// both a masked and an unmasked image.
pub fn scan(dir: &Path) -> Result<Vec<Image>, EvalError> {
    let data = |message: String| EvalError::Data {
        path: dir.to_path_buf(),
        message,
    };
    if !dir.is_dir() {
        return Err(data(
            "not a folder (expected the M2FRED subset: <person>/<S>-<F>-0.png)".into(),
        ));
    }
    let mut out = Vec::new();
    let mut people: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        if p.is_dir() {
            people.push((e.file_name().to_string_lossy().into_owned(), p));
        }
    }
    people.sort();
    for (person, pdir) in &people {
        let mut files = Vec::new();
        for e in std::fs::read_dir(pdir).map_err(io_err(pdir))? {
            let e = e.map_err(io_err(pdir))?;
            files.push(e.file_name().to_string_lossy().into_owned());
        }
        files.sort();
        let (mut m, mut u) = (0, 0);
        for f in files {
            let Some((capture, masked)) = parse_name(&f) else {
                return Err(EvalError::Data {
                    path: pdir.join(&f),
                    message: "expected <S>-<F>-0.png (F = 1 masked, 0 unmasked)".into(),
                });
            };
            if masked {
                m += 1;
            } else {
                u += 1;
            }
            out.push(Image {
                person: person.clone(),
                capture,
                masked,
                rel: format!("{person}/{f}"),
            });
        }
        if m == 0 || u == 0 {
            return Err(EvalError::Data {
                path: pdir.clone(),
                message: format!("{m} masked and {u} unmasked images: need both"),
            });
        }
    }
    if people.len() < 2 {
        return Err(data(format!(
            "{} person folders: need at least two (<person>/<S>-<F>-0.png)",
            people.len()
        )));
    }
    Ok(out)
}

/// Pairs of one protocol, as indices into the image list: (probe, enrolled).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pairs {
    pub probes: Vec<usize>,
    pub genuine: Vec<(usize, usize)>,
    pub impostor: Vec<(usize, usize)>,
}

/// Probes are the images with `masked == probe_masked`; enrolled images are
/// the unmasked ones. Never pairs an image with itself.
pub fn pairs(images: &[Image], probe_masked: bool) -> Pairs {
    let mut p = Pairs::default();
    for (i, a) in images.iter().enumerate() {
        if a.masked != probe_masked {
            continue;
        }
        p.probes.push(i);
        for (j, b) in images.iter().enumerate() {
            if b.masked || i == j {
                continue;
            }
            if a.person == b.person {
                p.genuine.push((i, j));
            } else {
                p.impostor.push((i, j));
            }
        }
    }
    p
}

/// Closed-set rank 1: for each probe, the enrolled person (best score over
/// their unmasked images, the probe itself excluded) with the highest
/// score. Returns (correct, probes counted); probes whose person has no
/// other unmasked image are not counted.
pub fn rank1(
    images: &[Image],
    probes: &[usize],
    score: impl Fn(usize, usize) -> f32,
) -> (usize, usize) {
    let (mut ok, mut n) = (0, 0);
    for &i in probes {
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for (j, b) in images.iter().enumerate() {
            if b.masked || i == j {
                continue;
            }
            let s = score(i, j);
            let e = best.entry(b.person.as_str()).or_insert(f32::NEG_INFINITY);
            *e = e.max(s);
        }
        let own = images[i].person.as_str();
        let Some(&mine) = best.get(own) else {
            continue;
        };
        n += 1;
        // A tie with another person is not a correct identification; a
        // failed probe (FAIL_SCORE everywhere) is never correct.
        if mine > FAIL_SCORE && best.iter().all(|(p, &s)| *p == own || s < mine) {
            ok += 1;
        }
    }
    (ok, n)
}

/// Options of one run.
pub struct Options {
    pub data: PathBuf,
    pub out: PathBuf,
    pub models: PathBuf,
    pub bundles: Vec<String>,
    pub detector: String,
    pub periocular: Vec<f32>,
    pub threads: usize,
    pub command: String,
}

/// Per image, after the front end and one embedder.
struct Embedded {
    /// None when no face was found.
    emb: Vec<Option<Vec<f32>>>,
    /// Presence's verdict on the (full) aligned crop.
    judged_masked: Vec<Option<bool>>,
}

/// One (model, crop setting, protocol) result.
struct Row {
    model: String,
    crops: String,
    protocol: &'static str,
    probes: usize,
    probe_fail: usize,
    genuine: Vec<f32>,
    impostor: Vec<f32>,
    rank1: (usize, usize),
    /// (threshold name, value) the daemon ships for this case, or why none.
    shipped: Result<(String, f32), String>,
}

const FARS: [f64; 2] = [1e-2, 1e-3];

/// Per image: the embedding (None without a face) and presence's verdict.
type PerImage = (Option<Vec<f32>>, Option<bool>);

/// Per model and rule (skin share, the bundle's classifier): masked and
/// unmasked images judged masked, (judged, of).
type PresenceRow = (String, &'static str, (usize, usize), (usize, usize));

fn pct(k: usize, n: usize) -> String {
    if n == 0 {
        return "–".into();
    }
    format!("{:.1}% ({k}/{n})", 100.0 * k as f64 / n as f64)
}

fn detect_all(
    det: &TractDetector,
    pool: &rayon::ThreadPool,
    data: &Path,
    images: &[Image],
) -> Result<Vec<(RgbImage, Option<Face>)>, EvalError> {
    pool.install(|| {
        images
            .par_iter()
            .map(|im| {
                let p = data.join(&im.rel);
                let img = crate::face::imageio::load_rgb(&p)
                    .map_err(|e| EvalError::Other(e.to_string()))?;
                let face = largest(&det.detect(&img)?).cloned();
                Ok((img, face))
            })
            .collect()
    })
}

fn embed_all(
    m: &Model,
    pool: &rayon::ThreadPool,
    faces: &[(RgbImage, Option<Face>)],
) -> Result<Embedded, EvalError> {
    let per: Vec<PerImage> = pool
        .install(|| {
            faces
                .par_chunks(8)
                .map(|chunk| -> Result<Vec<PerImage>, EvalError> {
                    let mut crops = Vec::new();
                    let mut judged = Vec::new();
                    for (img, face) in chunk {
                        let Some(f) = face else {
                            judged.push(None);
                            continue;
                        };
                        let mut crop = align(img, &f.landmarks, &m.align)?;
                        let share = presence::skin_share(&crop, &m.align);
                        judged.push(Some(share < presence::DEFAULT_THRESHOLD));
                        if let Some(cut) = m.periocular {
                            crate::face::periocular::grey_below(&mut crop, &m.align, cut);
                        }
                        crops.push(crop);
                    }
                    let refs: Vec<&RgbImage> = crops.iter().collect();
                    let mut embs = m.embedder.embed_batch(&refs)?.into_iter();
                    Ok(judged
                        .into_iter()
                        .map(|j| (j.and_then(|_| embs.next().map(|e| e.into_vec())), j))
                        .collect())
                })
                .collect::<Result<Vec<_>, _>>()
        })?
        .into_iter()
        .flatten()
        .collect();
    let (emb, judged_masked) = per.into_iter().unzip();
    Ok(Embedded { emb, judged_masked })
}

/// The threshold the daemon ships for `protocol` under `th`, with crops
/// cut at `cut` (None: whole faces).
fn shipped(
    th: Option<&Thresholds>,
    masked_probe: bool,
    cut: Option<f32>,
) -> Result<(String, f32), String> {
    let Some(th) = th else {
        return Err("bundle uncalibrated".into());
    };
    let pick = |name: &str, v: Option<f32>| {
        v.map(|v| (name.to_string(), v))
            .ok_or_else(|| format!("no `{name}` threshold in the manifest"))
    };
    match cut {
        None if masked_probe => pick("masked", th.masked),
        None => pick("unmasked", th.unmasked),
        // The daemon compares only masked probes as periocular crops.
        Some(_) if !masked_probe => {
            Err("the daemon compares unmasked probes as whole faces".into())
        }
        Some(c) => match (th.periocular, th.periocular_cut) {
            (Some(v), Some(pc)) if (pc - c).abs() < 1e-6 => Ok(("periocular".into(), v)),
            (Some(_), Some(pc)) => Err(format!("periocular threshold is for cut {pc}, not {c}")),
            _ => Err("no calibrated `periocular` threshold in the manifest".into()),
        },
    }
}

/// Run every bundle (and periocular setting), write `report.md`, print the tables.
pub fn run(o: &Options) -> Result<String, EvalError> {
    let t0 = Instant::now();
    let images = scan(&o.data)?;
    let n_masked = images.iter().filter(|i| i.masked).count();
    let people = images
        .iter()
        .map(|i| i.person.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    eprintln!(
        "m2fred: {} images of {people} people ({n_masked} masked)",
        images.len()
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.threads.max(1))
        .thread_name(|i| format!("facegate-eval-{i}"))
        .stack_size(crate::crash::INFERENCE_STACK)
        .start_handler(|_| crate::crash::install_for_pool_thread())
        .build()
        .map_err(|e| EvalError::Other(format!("thread pool: {e}")))?;
    let db = Bundle::open_named(&o.models, &o.detector)?;
    let det = TractDetector::from_bundle(&db, &DetectorOptions::default())?;
    let faces = detect_all(&det, &pool, &o.data, &images)?;
    let no_face: Vec<&str> = images
        .iter()
        .zip(&faces)
        .filter(|(_, f)| f.1.is_none())
        .map(|(i, _)| i.rel.as_str())
        .collect();
    eprintln!(
        "m2fred: detection {:.1} s, {} without a face",
        t0.elapsed().as_secs_f64(),
        no_face.len()
    );
    let pm = pairs(&images, true);
    let pu = pairs(&images, false);
    let mut rows = Vec::new();
    let mut presence_rows = Vec::new();
    let mut mixed = String::new();
    for name in &o.bundles {
        let manifest = Bundle::open_named(&o.models, name)?.manifest;
        let th = manifest.calibrated_thresholds();
        let settings: Vec<Option<f32>> = std::iter::once(None)
            .chain(o.periocular.iter().map(|&c| Some(c)))
            .collect();
        let mut whole: Option<(Embedded, Option<crate::face::presence::Classifier>)> = None;
        for cut in settings {
            let mut m = Model::load(&o.models, name)?;
            if let Some(c) = cut {
                m = m.with_periocular(c);
            }
            let t1 = Instant::now();
            let e = embed_all(&m, &pool, &faces)?;
            eprintln!(
                "m2fred: {} embedded in {:.1} s",
                m.name,
                t1.elapsed().as_secs_f64()
            );
            if cut.is_none() {
                let judged = |masked: bool, by: &dyn Fn(usize) -> Option<bool>| {
                    let v: Vec<bool> = (0..images.len())
                        .filter(|&k| images[k].masked == masked)
                        .filter_map(by)
                        .collect();
                    (v.iter().filter(|&&j| j).count(), v.len())
                };
                let skin = |k: usize| e.judged_masked[k];
                presence_rows.push((
                    name.clone(),
                    "skin share",
                    judged(true, &skin),
                    judged(false, &skin),
                ));
                if let Some(c) = &m.presence {
                    let cls = |k: usize| e.emb[k].as_ref().map(|v| c.decide(v, None).1);
                    presence_rows.push((
                        name.clone(),
                        "classifier",
                        judged(true, &cls),
                        judged(false, &cls),
                    ));
                }
            }
            if let (Some((w, cls)), Some(mode), Some(t)) = (&whole, m.periocular_mode, th) {
                if cut.is_some_and(|c| (c - mode.cut).abs() < 1e-6) {
                    mixed.push_str(&super::presence::pair_rows(
                        name,
                        &[("masked (M-U)", &pm), ("bare (U-U)", &pu)],
                        (&w.emb, &w.judged_masked),
                        &e.emb,
                        cls.as_ref(),
                        t,
                        mode.threshold,
                    ));
                }
            }
            let score = |a: usize, b: usize| match (&e.emb[a], &e.emb[b]) {
                (Some(x), Some(y)) => cosine(x, y),
                _ => FAIL_SCORE,
            };
            for (protocol, p, masked) in [("M-U", &pm, true), ("U-U", &pu, false)] {
                let mut impostor: Vec<f32> = p.impostor.iter().map(|&(a, b)| score(a, b)).collect();
                sort_desc(&mut impostor);
                rows.push(Row {
                    model: name.clone(),
                    crops: cut.map_or("face".into(), |c| format!("periocular {c}")),
                    protocol,
                    probes: p.probes.len(),
                    probe_fail: p.probes.iter().filter(|&&i| e.emb[i].is_none()).count(),
                    genuine: p.genuine.iter().map(|&(a, b)| score(a, b)).collect(),
                    impostor,
                    rank1: rank1(&images, &p.probes, score),
                    shipped: shipped(th, masked, cut),
                });
            }
            if cut.is_none() {
                whole = Some((e, m.presence.clone()));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut text = report(o, &images, people, &no_face, &rows, &presence_rows, secs);
    if !mixed.is_empty() {
        let _ = writeln!(
            text,
            "\n## Mixed rule as deployed\n\nEach probe called masked or not by the rule on its \
             whole face, then compared whole face at the manifest's `unmasked` threshold, or as a \
             periocular crop against the enrolment's periocular crop at `periocular` (the \
             daemon with periocular comparison). FRR over genuine pairs, FAR over impostor \
             pairs (counts: these are small sets).\n\n| model | probes | rule | called masked \
             | FRR | FAR |\n| --- | --- | --- | --- | --- | --- |\n{mixed}"
        );
    }
    std::fs::create_dir_all(&o.out).map_err(io_err(&o.out))?;
    let path = o.out.join("report.md");
    std::fs::write(&path, &text).map_err(io_err(&path))?;
    eprintln!("m2fred: wrote {} ({secs:.0} s)", path.display());
    Ok(text)
}

fn report(
    o: &Options,
    images: &[Image],
    people: usize,
    no_face: &[&str],
    rows: &[Row],
    presence_rows: &[PresenceRow],
    secs: f64,
) -> String {
    let n_masked = images.iter().filter(|i| i.masked).count();
    let mut s = String::new();
    let _ = writeln!(s, "# Real masks (M2FRED subset)\n");
    let _ = writeln!(s, "```\n$ {}\n```\n", o.command);
    let _ = writeln!(
        s,
        "{} images of {people} people: {n_masked} masked, {} unmasked. Detection \
         failures (no face, also with the padding retry): {}{}. Took {secs:.0} s.\n",
        images.len(),
        images.len() - n_masked,
        no_face.len(),
        if no_face.is_empty() {
            String::new()
        } else {
            format!(" ({})", no_face.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "M-U: masked probe vs unmasked enrolment; U-U: unmasked probe vs the person's other \
         unmasked images. Genuine: probe vs each unmasked image of the same person (never \
         itself); impostor: probe vs each unmasked image of every other person. A failed \
         detection is a non-match. TAR at FAR f is given with the number of impostor pairs \
         that FAR allows (floor(f·impostors)); when that is 0 the FAR is not measurable \
         (`n/m`). Rank 1: closed set, each enrolled person scored by their best unmasked \
         image.\n"
    );
    let _ = writeln!(
        s,
        "| model | crops | protocol | probes (no face) | genuine | impostors | TAR@FAR 1e-2 | \
         TAR@FAR 1e-3 | EER | rank 1 |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in rows {
        let tars: Vec<String> = FARS
            .iter()
            .map(|&f| {
                let k = (f * r.impostor.len() as f64).floor() as usize;
                if k == 0 {
                    return "n/m".into();
                }
                let (tar, _, _) = tar_at_far(&r.genuine, &r.impostor, f);
                format!("{:.1}% (≤{k})", 100.0 * tar)
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {:.1}% | {} |",
            r.model,
            r.crops,
            r.protocol,
            r.probes,
            r.probe_fail,
            r.genuine.len(),
            r.impostor.len(),
            tars[0],
            tars[1],
            100.0 * eer(&r.genuine, &r.impostor),
            pct(r.rank1.0, r.rank1.1)
        );
    }
    let _ = writeln!(
        s,
        "\n## At the shipped thresholds\n\nThe bundle manifest's calibrated `[thresholds]` \
         (whole faces: `masked` for M-U, `unmasked` for U-U; periocular crops: `periocular` for \
         M-U at the manifest's `periocular_cut`), applied by the protocol's ground truth, not \
         by mask presence. FRR: genuine pairs below the threshold; FAR: \
         impostor pairs at or above it.\n"
    );
    let _ = writeln!(s, "| model | crops | protocol | threshold | FRR | FAR |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        match &r.shipped {
            Ok((name, t)) => {
                let g = r.genuine.len();
                let acc = (rate_at_or_above(&r.genuine, *t) * g as f64).round() as usize;
                let fa = r.impostor.partition_point(|&x| x >= *t);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {name} = {t} | {} | {} |",
                    r.model,
                    r.crops,
                    r.protocol,
                    pct(g - acc, g),
                    pct(fa, r.impostor.len())
                );
            }
            Err(why) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | – ({why}) | – | – |",
                    r.model, r.crops, r.protocol
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\n## Mask presence\n\n`face::presence` on each model's whole aligned crop (images \
         with a face): the skin-share rule at its default threshold ({}), and the bundle's \
         classifier (`[presence]`, on the whole-face embedding, at the manifest's threshold) \
         when it has one.\n",
        presence::DEFAULT_THRESHOLD
    );
    let _ = writeln!(
        s,
        "| model | rule | masked judged masked | unmasked judged masked |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    for (m, rule, a, b) in presence_rows {
        let _ = writeln!(
            s,
            "| {m} | {rule} | {} | {} |",
            pct(a.0, a.1),
            pct(b.0, b.1)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn im(person: &str, s: u32, masked: bool) -> Image {
        Image {
            person: person.into(),
            capture: s.to_string(),
            masked,
            rel: format!("{person}/{s}-{}-0.png", masked as u8),
        }
    }

    /// Person a: 2 masked, 3 unmasked; b: 1 masked, 2 unmasked; c: 1 masked, 1 unmasked.
    fn layout() -> Vec<Image> {
        vec![
            im("a", 1, true),
            im("a", 2, true),
            im("a", 1, false),
            im("a", 2, false),
            im("a", 3, false),
            im("b", 1, true),
            im("b", 1, false),
            im("b", 2, false),
            im("c", 1, true),
            im("c", 1, false),
        ]
    }

    #[test]
    fn parses_labels_from_file_names() {
        assert_eq!(parse_name("3-1-0.png"), Some(("3".into(), true)));
        assert_eq!(parse_name("12-0-0.png"), Some(("12".into(), false)));
        for bad in [
            "3-2-0.png",
            "3-1-1.png",
            "3-1-0.jpg",
            "3-1.png",
            "3-1-0-0.png",
            "x-1-0.png",
            "-1-0.png",
            "README.md",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn masked_probe_pairs_have_the_expected_counts() {
        let v = layout();
        let p = pairs(&v, true);
        assert_eq!(p.probes, vec![0, 1, 5, 8]);
        // a: 2 probes × 3 unmasked; b: 1 × 2; c: 1 × 1.
        assert_eq!(p.genuine.len(), 2 * 3 + 2 + 1);
        // a: 2 × (2 + 1); b: 1 × (3 + 1); c: 1 × (3 + 2). 6 unmasked in all.
        assert_eq!(p.impostor.len(), 2 * 3 + 4 + 5);
        for &(i, j) in p.genuine.iter().chain(&p.impostor) {
            assert!(v[i].masked && !v[j].masked, "{i} {j}");
        }
        for &(i, j) in &p.genuine {
            assert_eq!(v[i].person, v[j].person);
        }
        for &(i, j) in &p.impostor {
            assert_ne!(v[i].person, v[j].person);
        }
    }

    #[test]
    fn unmasked_probe_pairs_never_pair_an_image_with_itself() {
        let v = layout();
        let p = pairs(&v, false);
        assert_eq!(p.probes.len(), 6);
        // a: 3 × 2; b: 2 × 1; c: 1 × 0.
        assert_eq!(p.genuine.len(), 3 * 2 + 2);
        // a: 3 × 3; b: 2 × 4; c: 1 × 5.
        assert_eq!(p.impostor.len(), 9 + 8 + 5);
        assert!(p.genuine.iter().chain(&p.impostor).all(|(i, j)| i != j));
        let mut g = p.genuine.clone();
        g.sort();
        g.dedup();
        assert_eq!(g.len(), p.genuine.len());
    }

    #[test]
    fn rank1_skips_probes_without_enrolment_and_counts_failures_as_wrong() {
        let v = layout();
        let p = pairs(&v, false);
        // Same person scores 0.9, others 0.1: every countable probe is right;
        // c's only unmasked image has nobody of c enrolled: not counted.
        let good = |i: usize, j: usize| if v[i].person == v[j].person { 0.9 } else { 0.1 };
        assert_eq!(rank1(&v, &p.probes, good), (5, 5));
        // Probe 2 failed: FAIL_SCORE everywhere, wrong.
        let fail2 = |i: usize, j: usize| if i == 2 { FAIL_SCORE } else { good(i, j) };
        assert_eq!(rank1(&v, &p.probes, fail2), (4, 5));
        // A tie with another person is wrong.
        let tie = |_: usize, _: usize| 0.5;
        assert_eq!(rank1(&v, &p.probes, tie), (0, 5));
    }

    #[test]
    fn shipped_threshold_follows_crop_and_cut() {
        let mut th: Thresholds =
            toml::from_str("status = \"calibrated\"\nunmasked = 0.6\nmasked = 0.5\n").unwrap();
        assert_eq!(
            shipped(Some(&th), true, None).unwrap(),
            ("masked".into(), 0.5)
        );
        assert_eq!(
            shipped(Some(&th), false, None).unwrap(),
            ("unmasked".into(), 0.6)
        );
        assert!(shipped(Some(&th), true, Some(0.5)).is_err());
        th.periocular = Some(0.4);
        th.periocular_cut = Some(0.5);
        assert_eq!(
            shipped(Some(&th), true, Some(0.5)).unwrap(),
            ("periocular".into(), 0.4)
        );
        assert!(shipped(Some(&th), true, Some(0.4)).is_err());
        assert!(shipped(Some(&th), false, Some(0.5)).is_err());
        assert!(shipped(None, true, None).is_err());
    }

    #[test]
    fn scan_refuses_missing_and_odd_folders() {
        let d = std::env::temp_dir().join(format!("facegate-m2fred-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert!(scan(&d).is_err());
        for p in ["000", "001"] {
            std::fs::create_dir_all(d.join(p)).unwrap();
            std::fs::write(d.join(p).join("1-1-0.png"), b"").unwrap();
            std::fs::write(d.join(p).join("1-0-0.png"), b"").unwrap();
        }
        let v = scan(&d).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].rel, "000/1-0-0.png");
        assert!(!v[0].masked && v[1].masked);
        std::fs::write(d.join("001").join("notes.txt"), b"").unwrap();
        let e = scan(&d).unwrap_err().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        std::fs::remove_file(d.join("001").join("notes.txt")).unwrap();
        std::fs::remove_file(d.join("001").join("1-1-0.png")).unwrap();
        let e = scan(&d).unwrap_err().to_string();
        assert!(e.contains("need both"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
