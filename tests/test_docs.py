"""The repository stands on its own: code cites only documents that are in it.

Comments and docstrings explain a rule by linking to docs/semantics.md (or
another file under docs/) or by stating the reason inline, never by pointing
at numbered sections, issues or style rules of documents the repository does
not hold. Two checks keep it so:

* no source file holds a citation of an outside document (the patterns are
  in `OUTSIDE_CITATIONS`);
* every `docs/<file>.md#<anchor>` link names a file that exists and a heading
  in it, with GitHub's anchor for that heading.

This file is scanned like every other; its patterns are written so that they
do not match their own source text, and `test_the_patterns_catch_citations`
proves that they still match real citations.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Where code lives; each file under these is scanned.
SCANNED_ROOTS = ("server", "client", "tests", "bench", "scripts", "protos")
#: Generated from protos/ (checked there), and directories that are not ours.
SKIPPED = (ROOT / "client" / "flowservice" / "v1",)
SKIPPED_DIR_NAMES = {"__pycache__", "node_modules", ".cache", ".venv", ".pytest_cache"}
#: Text files worth reading; profiles' flame graphs (.svg) are generated output.
TEXT_SUFFIXES = {
    ".py", ".pyi", ".proto", ".md", ".txt", ".toml", ".cfg", ".ini",
    ".json", ".sql", ".mjs", ".js", ".sh", ".yaml", ".yml",
}  # fmt: skip

SECTION = "\u00a7"  # the section sign, spelled out so that this file holds none
OUTSIDE_CITATIONS = {
    "a numbered section of an outside document": re.compile(SECTION + r"\s*\d"),
    "the outside spec by section": re.compile(r"\bspec\s*" + SECTION),
    "an issue by number": re.compile(r"\bissues?\s+#?\d", re.IGNORECASE),
    "a style rule by number": re.compile(r"\bstyle\s+M\d"),
    "an outside checklist's items": re.compile(r"\bchecklist\s+items?\b", re.IGNORECASE),
    "the outside spec's performance notes": re.compile(r"\(spec\s+performance"),
    # [c] and [s]: the pattern must not match its own source text.
    "a path to the outside spec": re.compile(r"/shared/spe[c]/|prefect-flows-semantic[s]"),
}

#: `docs/semantics.md#empty-lists`, `docs/grpcurl.md`: a file under docs/ and an anchor.
DOCS_LINK = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+))?")
#: In-page (`](#anchor)`) and sibling (`](grpcurl.md#anchor)`) links inside docs/*.md.
MARKDOWN_LINK = re.compile(r"\]\(([\w.-]+\.md)?#([\w-]+)\)")


def scanned_files() -> list[Path]:
    files = []
    for root in SCANNED_ROOTS:
        for directory, subdirectories, names in os.walk(ROOT / root):
            # Pruned in place, so that a virtualenv or cache is never walked.
            subdirectories[:] = sorted(
                name
                for name in subdirectories
                if name not in SKIPPED_DIR_NAMES and Path(directory, name) not in SKIPPED
            )
            files += [
                Path(directory, name)
                for name in sorted(names)
                if Path(name).suffix in TEXT_SUFFIXES
            ]
    return files


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def outside_citations(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, the line) for each outside citation in `text`."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in OUTSIDE_CITATIONS.items():
            if pattern.search(line):
                found.append((number, what, line.strip()))
    return found


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (before de-duplication)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # punctuation goes; letters, digits, _ and - stay
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 … suffixes for repeated headings."""
    result: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or match is None:
            continue
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def test_the_scan_covers_the_code_and_itself() -> None:
    files = scanned_files()
    assert Path(__file__).resolve() in files
    assert ROOT / "server" / "flowservice_server" / "filters.py" in files
    assert not [f for f in files if f.is_relative_to(ROOT / "client" / "flowservice" / "v1")]


def test_the_patterns_catch_citations() -> None:
    """Each pattern matches a citation it exists for; plain prose matches none."""
    citations = [
        "The meaning is Prefect's (spec " + SECTION + "3, " + SECTION + "4).",
        "wildcards (" + SECTION + "3.2)",
        "Security (iss" + "ue 6): bearer tokens",
        "see Iss" + "ue #12",
        "in one place (sty" + "le M2).",
        "(check" + "list items 1, 2, 22-26)",
        "(spec" + " performance notes)",
        "/work/shared" + "/spec/style.md",
    ]
    for citation in citations:
        assert outside_citations(citation), citation
    prose = (
        "See docs/semantics.md#empty-lists; grpc/grpc#34743 is upstream's bug. The issue is "
        "that a spec-conforming style guide lists items 1 and 2."
    )
    assert outside_citations(prose) == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Empty lists", "empty-lists"),
        ("ReadFlow and ReadFlowByName", "readflow-and-readflowbyname"),
        ("Absent, present and empty", "absent-present-and-empty"),
        ("`like` and case: SQLite vs. PostgreSQL", "like-and-case-sqlite-vs-postgresql"),
        ("Task runs and [their flow run](#x)", "task-runs-and-their-flow-run"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert github_anchor(heading) == anchor


def test_repeated_headings_get_numbered_anchors() -> None:
    markdown = "# A\n## Notes\n```\n# not a heading\n```\n## Notes\n"
    assert anchors(markdown) == {"a", "notes", "notes-1"}


def test_no_file_cites_an_outside_document() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line}"
        for path in scanned_files()
        for number, what, line in outside_citations(read(path))
    ]
    assert not found, (
        "cite docs/semantics.md (or state the reason) instead of outside documents:\n"
        + "\n".join(found)
    )


def test_every_docs_link_names_an_existing_file_and_heading() -> None:
    sources = [*scanned_files(), ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    links = 0
    broken = []
    for path in sources:
        for number, line in enumerate(read(path).splitlines(), start=1):
            found = [(m.group(1), m.group(2)) for m in DOCS_LINK.finditer(line)]
            if path.parent == ROOT / "docs":
                found += [
                    (m.group(1) or path.name, m.group(2)) for m in MARKDOWN_LINK.finditer(line)
                ]
            for name, anchor in found:
                links += 1
                target = ROOT / "docs" / name
                where = f"{path.relative_to(ROOT)}:{number}: docs/{name}"
                if not target.is_file():
                    broken.append(f"{where}: no such file")
                elif anchor is not None and anchor not in anchors(read(target)):
                    broken.append(f"{where}#{anchor}: no such heading")
    assert links > 0, "no docs/ links found: the scan is not reading the code"
    assert not broken, "broken links into docs/:\n" + "\n".join(broken)
