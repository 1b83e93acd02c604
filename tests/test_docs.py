"""The documentation holds together: every relative link in README.md and docs/ resolves, the README stays
short and starts with its two commands, and nothing cites a file the repository does not have."""

from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
         *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "examples", "*", "README.md"))),
         "sweeps/mini/README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(page: str) -> list[str]:
    with open(os.path.join(ROOT, page)) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # (code blocks hold no links)
    return LINK.findall(text)


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    relative = [u for u in links(page) if not re.match(r"[a-z]+:", u) and not u.startswith("#")]
    missing = [u for u in relative
               if not os.path.exists(os.path.normpath(os.path.join(ROOT, os.path.dirname(page), u.split("#")[0])))]
    assert not missing, f"{page}: links that resolve to nothing: {missing}"


def test_the_pages_link_to_something():
    """The check above would pass on pages without links: the README links every docs page."""
    readme = set(links("README.md"))
    pages = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))}
    assert pages <= readme, f"docs pages the README does not link: {sorted(pages - readme)}"


def test_the_readme_is_short_and_starts_with_its_two_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = f.read().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"
    assert lines[2] == "```bash" and "cpsweep launch sweeps/quickstart.yaml" in lines[3] and "pytest" in lines[4]


def test_nothing_cites_a_file_the_repository_lacks():
    sources = [*PAGES, *glob.glob(os.path.join(ROOT, "cpsweep", "**", "*.py"), recursive=True),
               *glob.glob(os.path.join(ROOT, "sweeps", "**", "*.yaml"), recursive=True)]
    assert any(p.endswith(os.path.join("sweeps", "blur_grid.yaml")) for p in sources)  # (the headers are scanned)
    for path in sources:
        with open(os.path.join(ROOT, path)) as f:
            assert "PAPER.md" not in f.read(), f"{path} cites PAPER.md, which is not in the repository (docs/paper.md)"
