"""Write bundle manifests (TOML).  The schema is read by src/bundle.rs."""
from __future__ import annotations

import math
from pathlib import Path

SCHEMA = 1


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("non-finite float in manifest")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v))


def dumps(doc: dict) -> str:
    lines = []
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append("")
            lines.append(f"[{k}]")
            for kk, vv in v.items():
                lines.append(f"{kk} = {_value(vv)}")
    return "\n".join(lines) + "\n"


def write(path: Path, doc: dict) -> None:
    path.write_text(dumps(doc))
