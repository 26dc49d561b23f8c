"""Statements of the docs outside code blocks that the code can confirm: links, form labels, defaults, lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import REPO, doc_files, prose

CONNECTIONS = REPO / "docs" / "connections.md"
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    headings = re.findall(r"^#{1,6}\s+(.*)$", prose(path), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def _links() -> list[tuple[Path, str]]:
    return [(path, match["target"]) for path in doc_files() for match in _LINK.finditer(prose(path))]


@pytest.mark.parametrize(("path", "target"), _links(), ids=[f"{p.relative_to(REPO)}->{t}" for p, t in _links()])
def test_relative_links_point_at_files_and_headings_that_exist(path, target):
    if re.match(r"[a-z]+:", target):
        return  # external: not followed offline
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.exists(), f"{path.relative_to(REPO)} links to missing {file_part}"
    if anchor:
        assert anchor in _anchors(linked), f"{path.relative_to(REPO)}: no heading #{anchor} in {linked.name}"


def _section(text: str, heading_start: str) -> str:
    match = re.search(rf"^## {re.escape(heading_start)}.*?(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no section {heading_start!r}"
    return match[0]


def _form_table(section: str) -> dict[str, tuple[str, str]]:
    """Form field label -> (stored in, default) from a section's table."""
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("Form field", "---"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


@pytest.mark.parametrize(("conn_type", "heading"), [("sonarly", "Sonarly"), ("indeed", "Indeed")])
def test_connection_reference_matches_the_form_and_the_hooks(conn_type, heading):
    from airflow_provider_quota.get_provider_info import get_provider_info
    from airflow_provider_quota.hooks.indeed import DEFAULT_SCOPE, IndeedHook
    from airflow_provider_quota.hooks.sonarly import SonarlyHook

    info = next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type)
    behaviour = info["ui-field-behaviour"]
    expected = {label: f"`{field}`" for field, label in behaviour["relabeling"].items()}
    expected |= {spec["label"]: f"extra `{name}`" for name, spec in info["conn-fields"].items()}

    section = _section(CONNECTIONS.read_text(encoding="utf-8"), heading)
    table = _form_table(section)
    assert {label: stored for label, (stored, _) in table.items()} == expected

    hidden = re.search(r"Hidden in the form: (.*)\.", section)
    assert hidden, "the section says which fields the form hides"
    assert set(hidden[1].split(", ")) == set(behaviour["hidden-fields"])

    hook = SonarlyHook if conn_type == "sonarly" else IndeedHook
    assert f"`{hook.conn_type}`" in section.splitlines()[0]
    assert table["API URL"][1] == f"`{hook.default_host}`"
    for name, spec in info["conn-fields"].items():
        default = spec["schema"].get("default")
        if default is not None:
            shown = table[spec["label"]][1]
            assert shown == f"`{str(default).lower() if isinstance(default, bool) else default}`", name
    if conn_type == "indeed":
        assert table["OAuth scope"][1] == f"`{DEFAULT_SCOPE}`"


def test_sandbox_page_lists_every_fault_kind_and_endpoint():
    from airflow_provider_quota.sandbox.state import ENDPOINTS, FAULT_KINDS

    text = (REPO / "docs" / "howto" / "offline-sandbox.md").read_text(encoding="utf-8")
    kinds = re.search(r"Fault kinds: (.*?)\. Endpoints: (.*?)\.", " ".join(text.split()))
    assert kinds, "the page lists fault kinds and endpoints"
    assert re.findall(r"`([^`]+)`", kinds[1]) == list(FAULT_KINDS)
    assert re.findall(r"`([^`]+)`", kinds[2]) == list(ENDPOINTS)


def test_changelog_version_is_the_package_version():
    from airflow_provider_quota import __version__

    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(r"^## \[(\S+)\] - \d{4}-\d{2}-\d{2}$", text, flags=re.MULTILINE)[1] == __version__  # type: ignore[index]
