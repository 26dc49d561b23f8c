"""What the report commands share: the docs block a run regenerates, and the arguments they pass to pytest."""

from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, start_mark: str, end_mark: str, block: str) -> None:
    """Replace what lies between two marker lines of a Markdown file (the marks stay)."""
    text = path.read_text()
    start, end = text.find(start_mark), text.find(end_mark)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {start_mark} ... {end_mark} block")
    path.write_text(text[: start + len(start_mark)] + "\n" + block + "\n" + text[end:])


def split_pytest_args(args: list[str]) -> tuple[list[str], list[str]]:
    """A report's own arguments, and those after ``--``, which go to pytest."""
    if "--" not in args:
        return args, []
    return args[: args.index("--")], args[args.index("--") + 1 :]
