"""
Secrets: the API key, the client secret and every access token the sandbox issued are searched in
every log file of the run and in a dump of the metadata database (trigger table while triggers
waited, XCom, task instances, rendered fields, event log...): 0 found. A canary planted through
the same paths first proves the search sees them.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from pathlib import Path

import pytest

from tests.deployment.harness import Harness

pytestmark = pytest.mark.deployment

#: Anything shaped like a sandbox access token, issued to someone the run did not see.
TOKEN_SHAPE = re.compile(r"sbx_at_[A-Za-z0-9_-]{20,}")
#: Where the canary must be found: proof that each kind of place is searched.
CANARY_CHANNELS = {
    "task log files",
    "metadata: trigger",
    "metadata: rendered_task_instance_fields",
    "metadata: dag_run",
}
CANARY_RESET_AFTER = 8.0


def log_channels(logs: Path) -> dict[str, str]:
    """Every file under the logs folder, grouped: process logs by name, Airflow's task and dag-processor logs."""
    channels: dict[str, list[str]] = {}
    for path in sorted(logs.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(logs)
        if relative.parts[0] == "airflow":
            channel = "dag-processor log files" if "dag_processor" in relative.parts else "task log files"
        else:
            channel = f"log: {relative}"
        channels.setdefault(channel, []).append(path.read_text(errors="replace"))
    return {channel: "\n".join(texts) for channel, texts in channels.items()}


def plant_canary(harness: Harness) -> str:
    """Run one gate on an account group named like the canary: it reaches the logs, the trigger and the run."""
    canary = f"quota-it-canary-{secrets.token_hex(8)}"
    harness.reset_sandbox()
    harness.sandbox.set_quota(canary, limit=25, used=25, reset_after_first_check=CANARY_RESET_AFTER)
    run_id = harness.api.trigger("deployment_gates", conf={"account_group": canary, "gates": 1})
    harness.api.wait_for_task("deployment_gates", run_id, "gate", {"deferred"}, timeout=180, map_index=0)
    harness.snapshot_metadata("while the canary gate waited")
    assert harness.api.wait_for_run("deployment_gates", run_id, timeout=180)["state"] == "success"
    return canary


def test_no_secret_in_any_log_file_or_the_metadata_database(harness):
    canary = plant_canary(harness)
    harness.snapshot_metadata("at the end")
    harness.issued.collect(harness.sandbox_server)
    searched = harness.issued.all()
    channels = {**log_channels(harness.deployment.logs), **harness.metadata_channels()}

    canary_found = {channel for channel, text in channels.items() if canary in text}
    found: Counter[str] = Counter()
    where: dict[str, set[str]] = {}
    for channel, text in channels.items():
        for name, secret in searched.items():
            if secret in text:
                found[name] += text.count(secret)
                where.setdefault(name, set()).add(channel)
        for match in TOKEN_SHAPE.findall(text):
            found["token-shaped string"] += 1
            where.setdefault("token-shaped string", set()).add(f"{channel}: {match[:12]}...")

    assert canary_found >= CANARY_CHANNELS, f"the canary was not found in {CANARY_CHANNELS - canary_found}"
    assert not found, f"secrets found: {dict(found)} in {where}"
    access_tokens = sum(name.startswith("access token") for name in searched)
    assert access_tokens > 0  # the spend and connection scenarios made the sandbox issue tokens
    harness.results.figure("secrets", "secrets searched", len(searched))
    harness.results.figure("secrets", "of which access tokens the sandbox issued", access_tokens)
    harness.results.figure("secrets", "log files and metadata tables searched", len(channels))
    harness.results.figure("secrets", "characters searched", sum(len(text) for text in channels.values()))
    harness.results.figure("secrets", "canary found in", sorted(canary_found))
    harness.results.figure("secrets", "secrets found", sum(found.values()))
