"""Write docs/reproduction.md and the README's quickstart results from committed results data.

    python analysis/reproduction_doc.py                     # from docs/reproduction/data (the committed runs)
    python analysis/reproduction_doc.py --data results      # from your own `cpsweep launch ... --storage results`
    python analysis/reproduction_doc.py --check             # exit 1 if the committed files differ

The data folder holds mini_<sweep>/ (the twins, sweeps/mini/) and quickstart/ (sweeps/quickstart.yaml); every
number and verdict of both documents is computed from it (cpsweep/results/reproduction.py).
tests/test_reproduction_doc.py runs --check on the committed data.
"""

from __future__ import annotations

import argparse
import os
import sys

from cpsweep.errors import CpsweepError
from cpsweep.results.reproduction import DATA, quickstart_data, render_quickstart, render_reproduction, splice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def documents(data: str) -> dict[str, str]:
    """{path relative to the repository: its text} for both documents."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    out = {"docs/reproduction.md": render_reproduction(data)}
    quick = quickstart_data(data)
    if quick is not None:
        out["README.md"] = splice(readme, render_quickstart(quick))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="reproduction_doc.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(ROOT, DATA), help="results root (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document differs")
    args = p.parse_args(argv)
    try:
        docs = documents(args.data)
    except CpsweepError as e:
        print(f"reproduction_doc: error: {e}", file=sys.stderr)
        return 2
    stale = []
    for rel, text in docs.items():
        path = os.path.join(ROOT, rel)
        with open(path, encoding="utf-8") as f:
            same = f.read() == text
        if args.check:
            stale += [] if same else [rel]
        elif not same:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {rel}")
    if stale:
        print(f"reproduction_doc: {', '.join(stale)} differ from what {args.data} gives; run "
              "python analysis/reproduction_doc.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
