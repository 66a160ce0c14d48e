"""The identity-disjoint protocol on LFW.

pairs.txt holds 10 folds of 300 genuine + 300 impostor pairs, and its folds
are person-disjoint. A split named by the folds it is *evaluated* on (e.g.
``f1-5``) trains on every person who is in none of those folds' pairs: the
people of the other folds plus the people in no pair at all. No image of an
evaluated person is ever used for training (``check_disjoint`` enforces it
and ``models/tests/test_split.py`` tests it).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    fold: int  # 0-based


def image_name(person: str, n: int) -> str:
    return f"{person}/{person}_{n:04d}.jpg"


def person(image: str) -> str:
    return image.split("/", 1)[0]


def parse_pairs(text: str) -> list[Pair]:
    """pairs.txt: a header `folds per_fold`, then per fold `per_fold` genuine
    lines (name a b) and `per_fold` impostor lines (name1 a name2 b)."""
    lines = [l.split() for l in text.splitlines() if l.strip()]
    head = [int(v) for v in lines[0]]
    folds, per = (head[0], head[1]) if len(head) == 2 else (1, head[0])
    out = []
    for i, f in enumerate(lines[1:]):
        fold = i // (2 * per)
        if len(f) == 3:
            out.append(Pair(image_name(f[0], int(f[1])), image_name(f[0], int(f[2])), True, fold))
        elif len(f) == 4:
            out.append(Pair(image_name(f[0], int(f[1])), image_name(f[2], int(f[3])), False, fold))
        else:
            raise ValueError(f"pairs line {i + 2}: {f!r}")
    if len(out) != folds * 2 * per:
        raise ValueError(f"{len(out)} pairs, the header announces {folds} x 2 x {per}")
    return out


def parse_folds(spec: str) -> list[int]:
    """`1-5`, `6-10`, `1,3,5-7` (1-based, as `facegate eval lfw --folds`) ->
    sorted 0-based indices."""
    out: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b or a)
        if lo < 1 or hi < lo:
            raise ValueError(f"fold range {part!r}")
        out.update(range(lo - 1, hi))
    if not out:
        raise ValueError("no fold given")
    return sorted(out)


def folds_label(folds: list[int]) -> str:
    """0-based folds -> the name used in bundles and docs: [0..4] -> `f1-5`."""
    f = sorted(folds)
    if f == list(range(f[0], f[-1] + 1)):
        return f"f{f[0] + 1}-{f[-1] + 1}" if len(f) > 1 else f"f{f[0] + 1}"
    return "f" + "_".join(str(x + 1) for x in f)


def list_people(deepfunneled: Path) -> dict[str, list[str]]:
    """person -> sorted image names (relative to deepfunneled/)."""
    people = {}
    for p in sorted(os.listdir(deepfunneled)):
        d = deepfunneled / p
        if d.is_dir():
            imgs = sorted(f"{p}/{f}" for f in os.listdir(d) if f.endswith(".jpg"))
            if imgs:
                people[p] = imgs
    return people


@dataclass
class Split:
    name: str                   # e.g. "f1-5": evaluated on folds 1-5
    eval_folds: list[int]       # 0-based
    eval_people: set[str]
    train_people: list[str]     # sorted
    train_images: list[str]     # sorted
    notes: dict = field(default_factory=dict)


def make_split(pairs: list[Pair], people: dict[str, list[str]], eval_folds: list[int],
               max_per_person: int | None = None, seed: int = 0) -> Split:
    """Train on everyone not in the pairs of `eval_folds`. With
    `max_per_person`, a person with more images contributes a seeded sample
    of that many (so a few prolific people do not dominate)."""
    ev = set(eval_folds)
    eval_people = {person(x) for p in pairs if p.fold in ev for x in (p.a, p.b)}
    train_people = sorted(p for p in people if p not in eval_people)
    images = []
    for p in train_people:
        imgs = people[p]
        if max_per_person and len(imgs) > max_per_person:
            rng = random.Random(f"{seed}:{p}")
            imgs = sorted(rng.sample(imgs, max_per_person))
        images.extend(imgs)
    s = Split(folds_label(eval_folds), sorted(ev), eval_people, train_people, sorted(images))
    check_disjoint(s, pairs)
    other = {person(x) for p in pairs if p.fold not in ev for x in (p.a, p.b)}
    s.notes = {"train_people": len(train_people), "train_images": len(s.train_images),
               "eval_people": len(eval_people),
               "train_people_in_other_folds": len(other & set(train_people)),
               "train_people_in_no_pair": len(set(train_people) - other)}
    return s


def check_disjoint(s: Split, pairs: list[Pair]) -> None:
    """Raise if any person of an evaluated pair has a training image."""
    evaluated = {person(x) for p in pairs if p.fold in set(s.eval_folds) for x in (p.a, p.b)}
    leaked = evaluated & ({person(i) for i in s.train_images} | set(s.train_people))
    if leaked:
        raise AssertionError(f"split {s.name}: {len(leaked)} evaluated people in training, "
                             f"e.g. {sorted(leaked)[:3]}")
