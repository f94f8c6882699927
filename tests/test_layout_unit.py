"""docs/layout.md names every file of the tree, and only those."""

from __future__ import annotations

import re
import subprocess

from dev.stack import ROOT

# Not in the list: the tests mirror the code (docs/tests.md), and these say nothing of a job.
UNLISTED = re.compile(r"^(tests/|README\.md$|\.gitignore$)|(^|/)__init__\.py$")


def listed() -> set[str]:
    """The paths docs/layout.md names: `dir/` bullets, then the files under each."""
    section = (ROOT / "docs" / "layout.md").read_text()
    paths, directory = set(), ""
    for line in section.splitlines():
        match = re.match(r"^(  )?- (.*?)(?: — |$)", line)
        if match is None:
            continue
        nested, names = match.group(1), re.findall(r"`([^`]+)`", match.group(2))
        if not nested:
            directory = names[0] if len(names) == 1 and names[0].endswith("/") else ""
        for name in names:
            if not name.endswith("/"):
                paths.add((directory if nested else "") + name)
    return paths


def test_the_layout_names_each_file_of_the_tree():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = {path for path in tracked.stdout.splitlines() if not UNLISTED.search(path)}
    named = listed()
    assert sorted(files - named) == [], "in the tree, not in docs/layout.md"
    assert sorted(named - files) == [], "in docs/layout.md, not in the tree"
