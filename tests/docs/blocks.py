"""
The fenced code blocks of the docs, read with Sybil, and the check each one names.

Every fenced block in ``README.md``, ``CHANGELOG.md`` and ``docs/**/*.md`` names the check that
executes it in its info string, after the language::

    ```python check=gate-dag
    ...
    ```

The checks live in :mod:`tests.docs.checks`; a block without ``check=``, naming a check that
does not exist, or in a language its check does not run, fails the suite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sybil import Document, Region
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

REPO = Path(__file__).resolve().parents[2]

#: A fence's info string: the language, then attributes such as ``check=NAME``.
_INFO = re.compile(r"[ \t]*(?P<lang>[^\s`]*)(?P<attributes>[^\n]*)\n")
_CHECK = re.compile(r"(?:^|\s)check=(?P<name>[\w-]+)")
_FENCES = RawFencedCodeBlockLexer(info_pattern=_INFO)


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int
    lang: str
    code: str
    check: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}:{self.line}"


def fenced_blocks(document: Document) -> Iterator[Region]:
    """A Sybil parser: every fenced block of a Markdown document, its :class:`Block` as the parsed value."""
    for region in _FENCES(document):
        check = _CHECK.search(region.lexemes["attributes"])
        region.parsed = Block(
            path=Path(document.path),
            line=document.text.count("\n", 0, region.start) + 1,
            lang=region.lexemes["lang"].lower(),
            code=str(region.lexemes["source"]),
            check=check["name"] if check else None,
        )
        yield region


def parse_blocks(text: str, path: Path) -> list[Block]:
    """Every fenced block of a Markdown text."""
    document = Document(text, str(path))
    return [region.parsed for region in fenced_blocks(document)]


def doc_files() -> list[Path]:
    """The Markdown files whose code blocks are checked: docs first, then README and CHANGELOG."""
    files = sorted((REPO / "docs").glob("**/*.md"))
    return files + [path for path in (REPO / "README.md", REPO / "CHANGELOG.md") if path.exists()]


def all_blocks() -> list[Block]:
    """Every fenced code block of every checked Markdown file."""
    return [block for path in doc_files() for block in parse_blocks(path.read_text(encoding="utf-8"), path)]


def prose(path: Path) -> str:
    """A Markdown file's text with its fenced blocks blanked out (line numbers kept)."""
    text = path.read_text(encoding="utf-8")
    for region in reversed(list(_FENCES(Document(text, str(path))))):
        text = text[: region.start] + "\n" * text.count("\n", region.start, region.end) + text[region.end :]
    return text
