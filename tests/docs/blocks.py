"""
The fenced code blocks of the docs, and the check each one names.

Every fenced block in ``README.md``, ``CHANGELOG.md`` and ``docs/**/*.md`` names the check that
executes it in its info string, after the language::

    ```python check=gate-dag
    ...
    ```

The checks live in :mod:`tests.docs.checks`; a block without ``check=``, or naming a check that
does not exist, fails the suite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")
_ATTR = re.compile(r"""(?P<key>[\w-]+)=(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))""")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int
    lang: str
    code: str
    attrs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def check(self) -> str | None:
        return self.attrs.get("check")

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}" if self.path.is_absolute() else f"{self.path}:{self.line}"


def parse_blocks(text: str, path: Path) -> list[Block]:
    """
    Every fenced block of a Markdown text, with its language and ``key=value`` attributes.

    :raise ValueError: for a fence that is never closed.
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _OPEN.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        fence, indent, info = opening["fence"], len(opening["indent"]), opening["info"]
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            line = lines[index]
            # Drop the fence's own indentation (a block inside a list item), at most that much.
            body.append(line[min(indent, len(line) - len(line.lstrip())) :])
            index += 1
        else:
            raise ValueError(f"{path}:{start + 1}: the code block opened here is never closed")
        words = info.split(maxsplit=1)
        lang = words[0].lower() if words else ""
        attrs = {m["key"]: m["quoted"] if m["quoted"] is not None else m["bare"] for m in _ATTR.finditer(info)}
        blocks.append(Block(path=path, line=start + 1, lang=lang, code="\n".join(body) + "\n", attrs=attrs))
        index += 1
    return blocks


def doc_files() -> list[Path]:
    """The Markdown files whose code blocks are checked: docs first, then README and CHANGELOG."""
    files = sorted((REPO / "docs").glob("**/*.md"))
    files += [path for path in (REPO / "README.md", REPO / "CHANGELOG.md") if path.exists()]
    return files


def all_blocks() -> list[Block]:
    """Every fenced code block of every checked Markdown file."""
    return [block for path in doc_files() for block in parse_blocks(path.read_text(encoding="utf-8"), path)]
