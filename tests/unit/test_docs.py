"""The README's layout section and the docs' links against the tree: every path named exists,
every tracked top-level folder and every rawinfer/ subpackage is named, every link resolves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_layout_matches_the_tree():
    layout = _section((REPO / "README.md").read_text(), "Layout")
    named = set(re.findall(r"^\| `([^`]+)`", layout, re.M))
    assert named, "no layout table"
    assert [p for p in named if not (REPO / p).exists()] == []
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    folders = {f.split("/")[0] + "/" for f in tracked if "/" in f}
    packages = {f"rawinfer/{p.name}/" for p in (REPO / "rawinfer").iterdir() if p.is_dir()}
    packages = {p for p in packages if (REPO / p / "__init__.py").exists()}
    assert folders - named == set(), "top-level folders missing from the README's layout"
    assert packages - named == set(), "rawinfer/ packages missing from the README's layout"


def test_doc_links_resolve():
    broken = []
    for doc in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []


def test_architecture_add_a_task_names_real_files():
    text = (REPO / "docs" / "architecture.md").read_text()
    steps = _section(text, "How to add ...").split("### a local backend", 1)[0]
    numbered = "\n".join(line for line in steps.splitlines() if re.match(r"\d+\. ", line))
    paths = set(re.findall(r"`((?:rawinfer|router|models|deployments)/[\w/<>.]+\.py)`", numbered))
    # an existing task, text embedding, fills the placeholders: the list holds for it
    real = {
        p.replace("<task>", "text_embedding").replace("<engine>", "text_embedding") for p in paths
    }
    assert len(real) == 5 and all((REPO / p).exists() for p in real), sorted(real)
