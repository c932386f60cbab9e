"""The docs hold together: a short README that names the two commands, and no broken link.

Every relative Markdown link in README.md, SECURITY.md, CHANGELOG.md and docs/*.md must
point at a file that exists and, with a ``#anchor``, at a heading of that file, by
GitHub's slug rule (lowercase, punctuation dropped except ``-`` and ``_``, spaces to ``-``,
``-1``, ``-2``… for repeated headings).
"""

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
README_MAX_BYTES = 8000
DOCS = sorted([README, ROOT / "SECURITY.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_HTML_ID = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans, where nothing is a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every ``#anchor`` a link into ``path`` may use."""
    text = _FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    found = set(_HTML_ID.findall(text))
    for heading in _HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the links in ``path`` that stay inside the repository."""
    text = _prose(path.read_text())
    targets = [t.strip("<>") for t in _INLINE_LINK.findall(text) + _REFERENCE.findall(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def broken(path: Path) -> list[str]:
    """What is wrong with each relative link of ``path``, one line each."""
    problems = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no file {os.path.relpath(dest, ROOT)}")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")
    return problems


def test_readme_is_a_front_door():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; reference belongs in docs/"


@pytest.mark.parametrize("command", ["make run", "make test"])
def test_readme_names_the_two_commands(command):
    assert command in README.read_text()


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken(path) == []


def test_the_link_check_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A `code` heading, twice!\n# A `code` heading, twice!\n"
        "[ok](#a-code-heading-twice) [ok](#a-code-heading-twice-1) [ok](page.md)\n"
        "[bad](#nowhere) [bad](missing.md) `[not a link](missing.md)` [web](https://example.org/x)\n"
    )
    assert broken(page) == [
        f"#nowhere: no heading #nowhere in {os.path.relpath(page, ROOT)}",
        f"missing.md: no file {os.path.relpath(tmp_path / 'missing.md', ROOT)}",
    ]
