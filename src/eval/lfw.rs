//! The LFW layout: `deepfunneled/<Name>/<Name>_NNNN.jpg` and `pairs.txt`
//! (10 folds of 300 genuine + 300 impostor pairs; the folds are
//! person-disjoint by construction of the benchmark).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{io_err, EvalError};

/// One pair of pairs.txt. Image names are relative to `deepfunneled/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub same: bool,
    pub fold: usize,
}

/// `Name/Name_NNNN.jpg`.
pub fn image_name(person: &str, n: u32) -> String {
    format!("{person}/{person}_{n:04}.jpg")
}

/// The person of an image name.
pub fn person(image: &str) -> &str {
    image.split('/').next().unwrap_or(image)
}

/// Parse pairs.txt text: a header "folds per_fold", then per fold
/// `per_fold` genuine lines (name a b) and `per_fold` impostor lines
/// (name1 a name2 b).
pub fn parse_pairs(text: &str) -> Result<Vec<Pair>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<usize> = lines
        .next()
        .ok_or("empty pairs file")?
        .split_whitespace()
        .map(|v| v.parse::<usize>().map_err(|e| format!("header: {e}")))
        .collect::<Result<_, _>>()?;
    let (folds, per) = match head.as_slice() {
        [f, p] => (*f, *p),
        [p] => (1, *p),
        _ => return Err("header must be `folds pairs_per_fold`".into()),
    };
    let num = |v: &str| v.parse::<u32>().map_err(|e| format!("{v:?}: {e}"));
    let mut out = Vec::new();
    for (i, l) in lines.enumerate() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let fold = i / (2 * per.max(1));
        let p = match f.as_slice() {
            [n, a, b] => Pair {
                a: image_name(n, num(a)?),
                b: image_name(n, num(b)?),
                same: true,
                fold,
            },
            [n1, a, n2, b] => Pair {
                a: image_name(n1, num(a)?),
                b: image_name(n2, num(b)?),
                same: false,
                fold,
            },
            _ => return Err(format!("line {}: {l:?}", i + 2)),
        };
        out.push(p);
    }
    if out.len() != folds * 2 * per {
        return Err(format!(
            "{} pairs, the header announces {folds} x 2 x {per}",
            out.len()
        ));
    }
    Ok(out)
}

/// An LFW copy on disk.
#[derive(Debug, Clone)]
pub struct Lfw {
    pub root: PathBuf,
    pub pairs: Vec<Pair>,
    /// Every image, sorted; grouped by person below.
    pub images: Vec<String>,
    pub people: BTreeMap<String, Vec<String>>,
}

impl Lfw {
    pub fn open(root: &Path) -> Result<Lfw, EvalError> {
        let pp = root.join("pairs.txt");
        let text = std::fs::read_to_string(&pp).map_err(io_err(&pp))?;
        let pairs = parse_pairs(&text).map_err(|message| EvalError::Data { path: pp, message })?;
        let dir = root.join("deepfunneled");
        let mut people: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            if !e.path().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            let mut imgs = Vec::new();
            for f in std::fs::read_dir(e.path()).map_err(io_err(&e.path()))? {
                let f = f.map_err(io_err(&e.path()))?;
                let fname = f.file_name().to_string_lossy().to_string();
                if fname.ends_with(".jpg") {
                    imgs.push(format!("{name}/{fname}"));
                }
            }
            imgs.sort();
            if !imgs.is_empty() {
                people.insert(name, imgs);
            }
        }
        let images: Vec<String> = people.values().flatten().cloned().collect();
        Ok(Lfw {
            root: root.to_path_buf(),
            pairs,
            images,
            people,
        })
    }

    /// Keep only the pairs of `folds` (0-based) and the people of those
    /// pairs (every image of theirs): the held-out half of an
    /// identity-disjoint training split (`facegate eval lfw --folds`).
    /// Nothing of another person remains, so no protocol of the report
    /// (pairs, open-set, calibration, the seed split) sees anyone else.
    pub fn restrict_to_folds(&mut self, folds: &[usize]) {
        self.pairs.retain(|p| folds.contains(&p.fold));
        let keep: std::collections::HashSet<String> = self
            .pairs
            .iter()
            .flat_map(|p| [person(&p.a).to_string(), person(&p.b).to_string()])
            .collect();
        self.people.retain(|name, _| keep.contains(name));
        self.images = self.people.values().flatten().cloned().collect();
    }

    pub fn path(&self, image: &str) -> PathBuf {
        self.root.join("deepfunneled").join(image)
    }

    /// The distinct images of the pairs, sorted.
    pub fn pair_images(&self) -> Vec<String> {
        images_of(&self.pairs)
    }

    /// People that appear in no pair: data the reported pair figures never
    /// touch (used for calibration).
    pub fn people_outside_pairs(&self) -> Vec<String> {
        let inside: std::collections::HashSet<&str> = self
            .pairs
            .iter()
            .flat_map(|p| [person(&p.a), person(&p.b)])
            .collect();
        self.people
            .keys()
            .filter(|p| !inside.contains(p.as_str()))
            .cloned()
            .collect()
    }
}

/// Parse a fold list as written on the command line, 1-based: `1-5`,
/// `6-10`, `1,3,5-7`. Returns 0-based fold indices, sorted, deduplicated.
/// The distinct images of `pairs`, sorted.
pub fn images_of(pairs: &[Pair]) -> Vec<String> {
    let mut v: Vec<String> = pairs
        .iter()
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn parse_folds(spec: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("fold {v:?}: expected a number from 1"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(format!("fold range {part:?} runs backwards"));
        }
        out.extend((a - 1)..b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err("no fold given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fold_lists() {
        assert_eq!(parse_folds("1-5").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_folds("6-10").unwrap(), vec![5, 6, 7, 8, 9]);
        assert_eq!(parse_folds("3, 1,2-3").unwrap(), vec![0, 1, 2]);
        assert!(parse_folds("0-2").is_err());
        assert!(parse_folds("5-1").is_err());
        assert!(parse_folds("x").is_err());
        assert!(parse_folds("").is_err());
    }

    #[test]
    fn restricting_to_folds_keeps_only_their_people() {
        let t = "2 1\nA 1 2\nA 1 B 1\nC 1 2\nD 1 E 1\n";
        let mut people = BTreeMap::new();
        for n in ["A", "B", "C", "D", "E", "F"] {
            people.insert(n.to_string(), vec![image_name(n, 1), image_name(n, 2)]);
        }
        let mut l = Lfw {
            root: PathBuf::from("/nonexistent"),
            pairs: parse_pairs(t).unwrap(),
            images: people.values().flatten().cloned().collect(),
            people,
        };
        l.restrict_to_folds(&[1]);
        assert_eq!(l.pairs.len(), 2);
        assert!(l.pairs.iter().all(|p| p.fold == 1));
        let names: Vec<&str> = l.people.keys().map(String::as_str).collect();
        assert_eq!(names, ["C", "D", "E"]);
        assert_eq!(l.images.len(), 6);
        assert!(l
            .images
            .iter()
            .all(|i| ["C", "D", "E"].contains(&person(i))));
    }

    #[test]
    fn parses_pairs() {
        let t = "2 1\nA 1 2\nA 1 B 3\nC 2 4\nD 1 E 1\n";
        let p = parse_pairs(t).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].a, "A/A_0001.jpg");
        assert!(p[0].same && !p[1].same);
        assert_eq!(p[1].b, "B/B_0003.jpg");
        assert_eq!((p[1].fold, p[2].fold), (0, 1));
        assert!(parse_pairs("2 1\nA 1 2\n").is_err());
        assert_eq!(person("A_b/A_b_0001.jpg"), "A_b");
    }
}
