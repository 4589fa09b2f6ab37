"""Copy the installed tensorrt-stubs into a folder mypy can parse, repairing only unparsable lines.

tensorrt-stubs 10.13 ships ``tensorrt_bindings/tensorrt.pyi`` with a few
signatures Python cannot parse (a parameter named ``in``; a parameter without a
default after ones with defaults), and without ``py.typed`` in the ``tensorrt``
folders, so mypy either skips the stubs or stops on a syntax error. This script
copies them unchanged except for those lines (``in`` becomes ``in_``; the
trailing parameters get ``= ...``) so the TensorRT backend is checked against
the real stub signatures. Usage (CI)::

    .venv/bin/python tools/trt_stubs_for_mypy.py build/trt-stubs
    .venv/bin/mypy vibration_anomaly/engine/tensorrt   # mypy.ini sets mypy_path (and these files)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from importlib import metadata
from pathlib import Path


def _params_default_fix(line: str) -> str:
    """Give ``= ...`` to every parameter that follows one with a default."""
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$", line)
    if not m:
        return line
    head, params, tail = m.groups()
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in params:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    seen_default = False
    fixed = []
    for p in parts:
        bare = p.strip()
        if "=" in bare:
            seen_default = True
        elif seen_default and bare and not bare.startswith("*"):
            p = p + " = ..."
        fixed.append(p)
    return head + ",".join(fixed) + tail


def repair(text: str) -> tuple[str, int]:
    lines = text.split("\n")
    repaired = 0
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("def "):
            continue
        probe = line.strip() + " ..."
        try:
            ast.parse(probe)
            continue
        except SyntaxError:
            pass
        new = re.sub(r"(?<=[(,\s])in(?=\s*:)", "in_", line)
        try:
            ast.parse(new.strip() + " ...")
        except SyntaxError:
            new = _params_default_fix(new)
        lines[i] = new
        repaired += 1
    return "\n".join(lines), repaired


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write the stubs to (then point mypy_path at it)")
    args = ap.parse_args(argv)
    try:
        dist = metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        print("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs", file=sys.stderr)
        return 1
    count = 0
    for f in dist.files or ():
        if not str(f).endswith(".pyi"):
            continue
        src = Path(str(f.locate()))
        dst = args.out / str(f)
        dst.parent.mkdir(parents=True, exist_ok=True)
        text, n = repair(src.read_text())
        ast.parse(text, filename=str(dst))  # fails loudly if a repair was not enough
        dst.write_text(text)
        count += n
        print(f"{dst}: {n} line(s) repaired", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
