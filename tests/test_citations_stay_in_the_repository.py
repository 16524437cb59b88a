"""Provider pages are cited by provider and section, never by a path outside the repository (issue 22): no
tracked text file (README.md, docs/, every Python source, the rest) names a directory outside the repository,
a seed file a reader does not have, or a line of one ("l.57"); docs/PROVIDERS.md says how to cite instead."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Built from parts, so that this file does not match itself.
OUTSIDE = re.compile("|".join([
    "/" + "work/",                                   # the machine's own directories
    "shared" + "/seeds", r"\.\./" + "shared",        # where the provider pages were kept
    r"\b[a-z]+-(?:make-call|create-call|calls-tutorial)\." + "txt",  # the page files' names
    r"(?<![\w.])l\\?\." + r"\d+",                   # a line of one of them ("l.57", "l.9-11", r"l\.9")
]))


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    paths = [REPO / name for name in listed.decode().split("\0") if name]
    return [path for path in paths if path.is_file() and b"\0" not in path.read_bytes()[:8192]]


def test_the_scan_covers_the_readme_the_docs_and_the_python_sources() -> None:
    names = {path.relative_to(REPO).as_posix() for path in tracked_text_files()}
    assert {"README.md", "docs/PROVIDERS.md", "workers/providers/plivo.py", "simulator/providers/plivo.py",
            "tests/test_providers_seed_conformance.py"} <= names


def test_the_pattern_finds_what_it_must() -> None:
    samples = ["kept in `/" + "work/shared/seeds/`", "(../" + "shared/STYLE.md)",
               "plivo-make-call." + "txt", "(seed l." + "57-99)", "its page, l." + "9 and l.54",
               r"(page l\." + r"10)"]
    assert all(OUTSIDE.search(sample) for sample in samples)
    fine = ["Plivo's Make a call page, Arguments: `from`", "tbl.5", "ml.20", "/workers/providers/"]
    assert not any(OUTSIDE.search(sample) for sample in fine)


def test_no_tracked_file_cites_a_path_outside_the_repository_or_a_line_of_a_seed_file() -> None:
    found = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():  # its docstring, comments and samples show what it refuses
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert found == [], "cite the provider's page by section (docs/PROVIDERS.md):\n" + "\n".join(found)
