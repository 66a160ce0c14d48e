"""The identity-disjoint split (run: models/venv python -m unittest discover -s models/tests)."""
import random
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_train import split  # noqa: E402


def synthetic_lfw(n_people=60, folds=10, per=3, seed=0):
    """A pairs.txt in LFW's format whose folds are person-disjoint, like LFW's,
    plus people who are in no pair."""
    rng = random.Random(seed)
    people = {f"P{i:03d}": [split.image_name(f"P{i:03d}", k) for k in range(1, rng.randint(2, 6))]
              for i in range(n_people)}
    names = sorted(people)
    groups = [names[f::folds + 1] for f in range(folds)]  # the last share is in no pair
    lines = [f"{folds}\t{per}"]
    for g in groups:
        for _ in range(per):
            p = rng.choice(g)
            lines.append(f"{p}\t1\t2")
        for _ in range(per):
            a, b = rng.sample(g, 2)
            lines.append(f"{a}\t1\t{b}\t1")
    return "\n".join(lines) + "\n", people


class SplitTest(unittest.TestCase):
    def test_parse_folds(self):
        self.assertEqual(split.parse_folds("1-5"), [0, 1, 2, 3, 4])
        self.assertEqual(split.parse_folds("6-10"), [5, 6, 7, 8, 9])
        self.assertEqual(split.parse_folds("3,1,2-3"), [0, 1, 2])
        for bad in ("0-2", "5-1", ""):
            with self.assertRaises(ValueError):
                split.parse_folds(bad)
        self.assertEqual(split.folds_label([0, 1, 2, 3, 4]), "f1-5")
        self.assertEqual(split.folds_label([5, 6, 7, 8, 9]), "f6-10")

    def test_parse_pairs_folds(self):
        text, _ = synthetic_lfw()
        pairs = split.parse_pairs(text)
        self.assertEqual(len(pairs), 60)
        self.assertEqual([p.fold for p in pairs[:6]], [0] * 6)
        self.assertEqual(pairs[6].fold, 1)
        self.assertTrue(pairs[0].same and not pairs[3].same)

    def test_no_evaluated_person_in_training(self):
        text, people = synthetic_lfw()
        pairs = split.parse_pairs(text)
        for spec, other in (("1-5", "6-10"), ("6-10", "1-5")):
            s = split.make_split(pairs, people, split.parse_folds(spec), max_per_person=2)
            ev = {split.person(x) for p in pairs if p.fold in s.eval_folds for x in (p.a, p.b)}
            trained = {split.person(i) for i in s.train_images}
            self.assertTrue(ev, "no evaluated people")
            self.assertFalse(ev & trained, f"split {spec} trains on evaluated people")
            self.assertFalse(ev & set(s.train_people))
            # The other half's people and the people in no pair are trained on.
            oth = {split.person(x) for p in pairs if p.fold in split.parse_folds(other) for x in (p.a, p.b)}
            self.assertTrue(oth <= trained)
            nopair = set(people) - ev - oth
            self.assertTrue(nopair and nopair <= trained)
            self.assertTrue(all(sum(1 for i in s.train_images if split.person(i) == p) <= 2 for p in trained))

    def test_check_disjoint_catches_a_leak(self):
        text, people = synthetic_lfw()
        pairs = split.parse_pairs(text)
        s = split.make_split(pairs, people, [0, 1, 2, 3, 4])
        s.train_images.append(pairs[0].a)
        with self.assertRaises(AssertionError):
            split.check_disjoint(s, pairs)

    def test_real_lfw_if_present(self):
        import os
        if not os.environ.get("FACEGATE_LFW"):
            self.skipTest("FACEGATE_LFW not set")
        root = Path(os.environ["FACEGATE_LFW"])
        if not (root / "pairs.txt").exists():
            self.skipTest("no LFW copy")
        pairs = split.parse_pairs((root / "pairs.txt").read_text())
        people = split.list_people(root / "deepfunneled")
        a = split.make_split(pairs, people, split.parse_folds("1-5"))
        b = split.make_split(pairs, people, split.parse_folds("6-10"))
        # LFW's folds are person-disjoint: each model's evaluated people are
        # all trained on by the other model.
        self.assertFalse(a.eval_people & b.eval_people)
        self.assertTrue(a.eval_people <= set(b.train_people))
        self.assertTrue(b.eval_people <= set(a.train_people))

    def test_list_people(self):
        with tempfile.TemporaryDirectory() as d:
            for p, n in (("A", 2), ("B", 1)):
                (Path(d) / p).mkdir()
                for k in range(n):
                    (Path(d) / p / f"{p}_{k + 1:04d}.jpg").write_bytes(b"")
            (Path(d) / "C").mkdir()
            self.assertEqual(split.list_people(Path(d)), {"A": ["A/A_0001.jpg", "A/A_0002.jpg"],
                                                          "B": ["B/B_0001.jpg"]})


if __name__ == "__main__":
    unittest.main()
