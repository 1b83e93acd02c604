"""docs/reproduction.md and the README's quickstart results are exactly what the committed data give
(analysis/reproduction_doc.py): a number typed by hand, or data changed without regenerating, fails here."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_documents_regenerate_byte_identically_from_the_committed_data():
    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    try:
        from reproduction_doc import documents
    finally:
        sys.path.pop(0)
    docs = documents(os.path.join(ROOT, "docs", "reproduction", "data"))
    assert set(docs) == {"docs/reproduction.md", "README.md"}
    for rel, text in docs.items():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            assert f.read() == text, f"{rel} differs from the committed data: run python analysis/reproduction_doc.py"


def test_check_mode_reports_a_stale_document(tmp_path):
    script = os.path.join(ROOT, "analysis", "reproduction_doc.py")
    out = subprocess.run([sys.executable, script, "--check", "--data", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    # an empty data folder gives a page of "not run" verdicts: not the committed page
    assert out.returncode == 1 and "docs/reproduction.md differ" in out.stderr and "Traceback" not in out.stderr
