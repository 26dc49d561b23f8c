"""The one table of ``make bench``: rows of (project, anchor, ratio, target, met?), as Markdown."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


@dataclass
class Row:
    """One measurement, project beside anchor."""

    what: str
    project: float
    anchor: float
    unit: str = ""
    #: True when a smaller figure is better (requests, seconds, memory); False for throughput.
    lower_is_better: bool = True
    target: str = "-"
    #: None when the row has no target (the figure is reported for information).
    met: bool | None = None
    digits: int = 1
    #: Shown instead of the numbers when set (e.g. "p99 0.4 · max 164").
    project_text: str | None = None
    anchor_text: str | None = None
    ratio_text: str | None = None

    def ratio(self) -> str:
        if self.ratio_text is not None:
            return self.ratio_text
        return format_ratio(self.project, self.anchor, lower_is_better=self.lower_is_better)

    def cells(self) -> list[str]:
        project = self.project_text or f"{format_number(self.project, self.digits)}{self.unit}"
        anchor = self.anchor_text or f"{format_number(self.anchor, self.digits)}{self.unit}"
        met = "-" if self.met is None else ("yes" if self.met else "**no**")
        return [self.what, project, anchor, self.ratio(), self.target, met]


def format_number(value: float, digits: int = 1) -> str:
    if value == int(value) and abs(value) >= 1 and digits <= 1:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def format_ratio(project: float, anchor: float, *, lower_is_better: bool = True) -> str:
    """How many times better the project is than the anchor (>1: project ahead)."""
    better, worse = (anchor, project) if lower_is_better else (project, anchor)
    if worse <= 0:
        return "∞" if better > 0 else "1.0x"
    ratio = better / worse
    if ratio >= 10_000:
        return "> 10,000x"
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.1f}x"


def markdown_table(rows: list[Row]) -> str:
    header = ["measurement", "project", "anchor", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    cpu = "unknown"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    memory = "unknown"
    try:
        match = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        memory = f"{int(match.group(1)) / 2**20:.1f} GiB" if match else memory
    except OSError:
        pass
    return {
        "nproc": _run(["nproc"]),
        "arch": _run(["uname", "-m"]),
        "kernel": platform.release(),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "apache-airflow": _version("apache-airflow"),
        "apache-airflow-task-sdk": _version("apache-airflow-task-sdk"),
        "apache-airflow-providers-http": _version("apache-airflow-providers-http"),
        "httpx": _version("httpx"),
        "aiohttp": _version("aiohttp"),
        "requests": _version("requests"),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def results_markdown(rows: list[Row], info: dict[str, Any]) -> str:
    """The table and the conditions it was measured in."""
    env = info["machine"]
    return "\n".join(
        [
            markdown_table(rows),
            "",
            "Ratio: how many times better the project is than the anchor (anchor ÷ project for costs, "
            "project ÷ anchor for throughput); above 1 the project is ahead.",
            "",
            f"Measured {info['started']} in {info['duration_s']:.0f} s on {env['nproc']} x {env['cpu']} "
            f"({env['arch']}, {env['memory']}), Python {env['python']}, Airflow {env['apache-airflow']} "
            f"(task SDK {env['apache-airflow-task-sdk']}), apache-airflow-providers-http "
            f"{env['apache-airflow-providers-http']}, httpx {env['httpx']}, aiohttp {env['aiohttp']}. "
            f"Load average (1, 5, 15 min) at the start: {info['load_start']}; at the end: {info['load_end']}.",
        ]
    )


def replace_block(text: str, block: str, name: str = "table") -> str:
    """Put ``block`` between the ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->`` markers of a text."""
    start_marker, end_marker = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    start, end = text.index(start_marker), text.index(end_marker)
    return text[: start + len(start_marker)] + "\n" + block.strip() + "\n" + text[end:]


def write_docs(block: str, name: str = "table") -> Path:
    """Replace one marked block of docs/performance.md."""
    DOCS.write_text(replace_block(DOCS.read_text(), block, name))
    return DOCS
