"""Compare `facegate eval lfw` reports (pretrained vs trained, same folds)
in one markdown table: python -m facegate_train.summarise LABEL=report.md ..."""
from __future__ import annotations

import sys
from pathlib import Path


def tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    out, cur = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cur is None:
                cur = (cells, [])
                out.append(cur)
            elif not all(set(c) <= set("-: ") for c in cells):
                cur[1].append(cells)
        else:
            cur = None
    return out


def find(ts, first: str, col: str):
    for head, rows in ts:
        if head and head[0] == first and col in head:
            return head, rows
    return None, []


def summary(path: Path) -> dict:
    ts = tables(path.read_text())
    s = {}
    head, rows = find(ts, "condition", "10-fold accuracy")
    for r in rows:
        k = r[0] if r[1] == "-" else f"{r[0]} {r[1]}"
        s[k] = {"acc": r[2], "tar3_3k": r[6], "eer": r[8]}
    head, rows = find(ts, "condition", "impostors")
    for r in rows:
        k = r[0] if r[1] == "-" else f"{r[0]} {r[1]}"
        d = dict(zip(head, r))
        s.setdefault(k, {}).update({"tar3": d.get("TAR @ 1e-3", "").split(" (")[0],
                                    "tar4": d.get("TAR @ 1e-4", "").split(" (")[0],
                                    "eer_large": d.get("EER", "")})
    head, rows = find(ts, "probe", "FRR (pair images)")
    for r in rows:
        s.setdefault("calibrated", {})[r[0]] = dict(zip(head, r)).get("FRR (pair images)")
    head, rows = find(ts, "probes", "rank-1 (closed set)")
    for r in rows:
        s.setdefault("rank1", {})[r[0]] = r[1]
    return s


def main(argv: list[str]) -> int:
    conds = ["U-U", "M-U procedural", "M-M procedural", "M-U templates", "M-M templates"]
    print("| model | folds | condition | 10-fold acc | EER (pairs) | TAR @1e-3 (large) | TAR @1e-4 (large) | EER (large) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    extra = []
    for a in argv:
        label, _, p = a.partition("=")
        model, _, folds = label.partition("@")
        s = summary(Path(p))
        for c in conds:
            if c in s:
                d = s[c]
                print(f"| {model} | {folds} | {c} | {d.get('acc', '')} | {d.get('eer', '')} | "
                      f"{d.get('tar3', '')} | {d.get('tar4', '')} | {d.get('eer_large', '')} |")
        cal = s.get("calibrated", {})
        r1 = s.get("rank1", {})
        extra.append(f"| {model} | {folds} | {cal.get('unmasked', '')} | {cal.get('masked', '')} | "
                     f"{r1.get('unmasked', '')} | {r1.get('masked (procedural)', '')} | "
                     f"{r1.get('masked (templates)', '')} |")
    print()
    print("| model | folds | calibrated FRR @ FAR 1e-4, unmasked | masked | rank-1 unmasked | rank-1 masked (procedural) | rank-1 masked (templates) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
