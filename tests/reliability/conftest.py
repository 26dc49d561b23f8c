"""
The reliability suite's figures and its secrets scan.

Every test of this directory gets a ``figures`` object (autouse, with the sandbox reset) that
records what the test did: the sandbox's request counters and the faults it injected (read at
teardown), faults and requests of the local servers, the tasks the test ran and whether each
ended as expected, and rows lost or duplicated in a warehouse. Everything the suite emits is
kept for the secrets scan: a root logging handler at DEBUG for the whole suite, the stdout,
stderr and log records pytest captured for each phase, and the exception messages, XCom values,
rendered template fields and serialized trigger kwargs the tests hand to ``figures.evidence``.

With ``QUOTA_RELIABILITY_FIGURES=<path>`` the per-test figures and the scan are written there as
JSON when the session ends (``python -m tests.reliability.report`` does this and prints them).
``QUOTA_RELIABILITY_FULL=1`` selects the full load scenarios instead of their fast variants.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import INDEED_SECRET, SONARLY_KEY, time_travel
from tests.conftest import first_event as next_event

HERE = Path(__file__).resolve().parent
FULL = os.environ.get("QUOTA_RELIABILITY_FULL", "") == "1"
FIGURES_PATH = os.environ.get("QUOTA_RELIABILITY_FIGURES")
#: Report sections, from the test module's name.
SECTIONS = {
    "test_transport": "transport faults",
    "test_data": "data faults",
    "test_input": "bad input from DAG authors",
    "test_secrets": "secrets and transport security",
    "test_warehouse": "warehouse integrity",
    "test_load": "load",
    "test_hostile": "hostile input",
    "test_report": "figures report (self-test)",
}
#: Every access token the sandbox issues looks like this.
TOKEN_PATTERN = re.compile(r"sbx_at_[A-Za-z0-9_\-]{16,}")
#: A fixed moment for time travel (the current month is then 11/2026).
START = datetime(2026, 11, 16, 9, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- suite-wide state


@dataclass
class TestFigures:
    """What one test did; tests add to it through the ``figures`` fixture."""

    nodeid: str
    section: str
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    tasks: int = 0
    tasks_as_expected: int = 0
    rows_checked: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    tokens_issued: int = 0
    outcome: str = "passed"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---------------------------------------------------------------- recording

    def fault(self, kind: str, count: int = 1) -> None:
        """A fault made by a local server or the test itself (the sandbox counts its own)."""
        self.faults[kind] += count

    def sent(self, count: int) -> None:
        """Requests sent to a local server or a refused port (the sandbox counts its own)."""
        self.requests += count

    def evidence(self, channel: str, value: Any) -> None:
        """Something the secrets scan must search: an exception, an XCom value, rendered fields..."""
        SUITE.add(channel, _as_text(value))

    def task(
        self, run: Callable[[], Any], *, expect: type[BaseException] | None = None, match: str | None = None
    ) -> Any:
        """
        Run one task (an operator's or sensor's execute, a hook call standing for one) and check how it ends.

        :param expect: the exception the task must end with; None: it must succeed.
        :param match: a regular expression the exception's message must contain.
        :return: the task's result, or the exception it ended with.
        """
        with self.lock:
            self.tasks += 1
        try:
            result = run()
        except BaseException as exc:
            self.evidence("exception", exc)
            if expect is None or not isinstance(exc, expect) or (match and not re.search(match, str(exc))):
                raise
            with self.lock:
                self.tasks_as_expected += 1
            return exc
        self.evidence("xcom", result)
        if expect is not None:
            raise AssertionError(f"expected the task to end with {expect.__name__}, it succeeded: {result!r}")
        with self.lock:
            self.tasks_as_expected += 1
        return result

    def event(self, payload: dict[str, Any], *, status: str, match: str | None = None) -> dict[str, Any]:
        """Check a trigger's event, counted as one task (a deferred sensor's wait)."""
        self.tasks += 1
        self.evidence("trigger event", payload)
        assert payload.get("status") == status, payload
        if match is not None:
            assert re.search(match, str(payload.get("message", ""))), payload
        self.tasks_as_expected += 1
        return payload

    def rows(self, expected: Collection[tuple[Any, ...]], actual: Sequence[tuple[Any, ...]]) -> tuple[int, int]:
        """
        Compare the keys a warehouse should hold with the keys it holds.

        :return: (rows lost, rows duplicated); the caller asserts both are 0.
        """
        present = Counter(actual)
        lost = sum(1 for key in set(expected) if key not in present)
        duplicated = sum(count - 1 for count in present.values() if count > 1)
        self.rows_checked += len(set(expected))
        self.rows_lost += lost
        self.rows_duplicated += duplicated
        return lost, duplicated

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "section": self.section,
            "outcome": self.outcome,
            "faults": dict(self.faults),
            "requests": self.requests,
            "tasks": self.tasks,
            "tasks_as_expected": self.tasks_as_expected,
            "rows_checked": self.rows_checked,
            "rows_lost": self.rows_lost,
            "rows_duplicated": self.rows_duplicated,
            "tokens_issued": self.tokens_issued,
        }


def _as_text(value: Any) -> str:
    if isinstance(value, BaseException):
        return "".join(traceback.format_exception(type(value), value, value.__traceback__)) + repr(value)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return repr(value)


class Suite:
    """Figures of every test and every text the suite emitted."""

    def __init__(self) -> None:
        self.tests: dict[str, TestFigures] = {}
        self.texts: list[tuple[str, str]] = []
        self.tokens: set[str] = set()
        self.canaries: set[str] = set()
        #: Wrong credentials some tests use: they must not be echoed either.
        self.extra_secrets: set[str] = set()
        self.active = False
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def add(self, channel: str, text: str) -> None:
        if text:
            with self.lock:
                self.texts.append((channel, text))

    def scan(self) -> dict[str, Any]:
        """
        Search everything emitted so far for the secrets.

        Secrets: the Sonarly API key, the Indeed client secret, the wrong credentials some tests
        use, every access token the sandbox issued, and anything shaped like a sandbox access
        token. Canaries (planted on purpose by the scan's own test) are counted apart, to prove
        each channel is really captured.
        """
        with self.lock:
            texts = list(self.texts)
            tokens = set(self.tokens)
            canaries = set(self.canaries)
            extra = set(self.extra_secrets)
        fixed = {"Sonarly API key": SONARLY_KEY, "Indeed client secret": INDEED_SECRET}
        fixed.update({f"test credential {index}": secret for index, secret in enumerate(sorted(extra), 1)})
        hits: Counter[str] = Counter()
        by_channel: Counter[str] = Counter()
        canary_channels: Counter[str] = Counter()
        scanned: Counter[str] = Counter()
        for channel, text in texts:
            scanned[channel] += len(text)
            for name, secret in fixed.items():
                found = text.count(secret)
                hits[name] += found
                by_channel[channel] += found
            for candidate in TOKEN_PATTERN.findall(text):
                # an issued token, or one that only looks like it: both count
                hits["access token" if candidate in tokens else "token-shaped string"] += 1
                by_channel[channel] += 1
            for canary in canaries:
                canary_channels[channel] += text.count(canary)
        return {
            "secrets_found": sum(hits.values()),
            "hits": dict(hits),
            "hits_by_channel": dict(by_channel),
            "secrets_searched": len(fixed) + len(tokens),
            "access_tokens_searched": len(tokens),
            "characters_scanned": dict(scanned),
            "canary_hits_by_channel": dict(canary_channels),
        }


SUITE = Suite()


class _SuiteLogHandler(logging.Handler):
    """Keeps every log record emitted while a reliability test runs, whatever its level or thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not SUITE.active:
            return
        try:
            SUITE.add("log", self.format(record))
        except Exception:
            SUITE.add("log", repr(record.__dict__))


_HANDLER = _SuiteLogHandler()


@contextmanager
def _everything_logged() -> Iterator[None]:
    """
    While a reliability test runs: the suite's handler on the root logger, the root logger and
    structlog (Airflow's task and hook loggers) at DEBUG; restored afterwards for other suites.
    """
    import structlog

    root = logging.getLogger()
    if _HANDLER not in root.handlers:  # Airflow may have reconfigured logging since
        root.addHandler(_HANDLER)
    root_level = root.level
    wrapper_class = structlog.get_config().get("wrapper_class")
    _CONFIGURED_STRUCTLOG_WRAPPER[:] = [wrapper_class]
    root.setLevel(logging.DEBUG)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    SUITE.active = True
    try:
        yield
    finally:
        SUITE.active = False
        root.setLevel(root_level)
        structlog.configure(wrapper_class=wrapper_class)


_CONFIGURED_STRUCTLOG_WRAPPER: list[Any] = []


@contextmanager
def airflow_configured_log_level() -> Iterator[None]:
    """
    Airflow's own structlog level (INFO) inside a test, instead of the suite's DEBUG.

    For dag.test() only: at DEBUG, Airflow's in-process test supervisor logs the body of every
    MaskSecret message ("Sending request ... MaskSecret(value='...')"), i.e. each secret that a
    task asks it to mask; the real supervisor omits those bodies. Not this provider's doing.
    """
    import structlog

    debug_wrapper = structlog.get_config().get("wrapper_class")
    structlog.configure(wrapper_class=_CONFIGURED_STRUCTLOG_WRAPPER[0])
    try:
        yield
    finally:
        structlog.configure(wrapper_class=debug_wrapper)


def _is_mine(path: Path | str) -> bool:
    return HERE in Path(path).resolve().parents


#: Node ids of this directory's tests, from collection.
MY_NODEIDS: set[str] = set()


# --------------------------------------------------------------------------- pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scan_last: runs after every other reliability test (the secrets scan)")
    config.addinivalue_line("markers", "load: a load scenario; QUOTA_RELIABILITY_FULL=1 runs its full size")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    MY_NODEIDS.update(item.nodeid for item in items if _is_mine(item.path))
    last = [item for item in items if _is_mine(item.path) and item.get_closest_marker("scan_last")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not _is_mine(item.path):
        return (yield)
    with _everything_logged():
        return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in MY_NODEIDS:
        return
    for title, content in report.sections:
        if not title.endswith(f" {report.when}"):
            continue  # sections of earlier phases are repeated in later reports
        channel = "stdout" if "stdout" in title else "stderr" if "stderr" in title else "captured log"
        SUITE.add(channel, content)
    if report.failed:
        SUITE.add("failure report", report.longreprtext)
    figures = SUITE.tests.get(report.nodeid)
    if figures is not None and (report.failed or (report.skipped and report.when != "teardown")):
        figures.outcome = "failed" if report.failed else "skipped"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not FIGURES_PATH or not SUITE.tests:
        return
    path = Path(FIGURES_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "full": FULL,
                "exitstatus": int(exitstatus),
                "duration_seconds": round(time.monotonic() - SUITE.started, 1),
                "tests": [figures.as_dict() for figures in SUITE.tests.values()],
                "scan": SUITE.scan(),
            },
            indent=2,
        )
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def figures(request: pytest.FixtureRequest, sandbox: Any, sandbox_server: Any) -> Iterator[TestFigures]:
    """This test's figures; the sandbox is reset first, its counters are added at teardown."""
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    figures = TestFigures(nodeid=request.node.nodeid, section=SECTIONS.get(module, module))
    SUITE.tests[figures.nodeid] = figures
    yield figures
    stats = sandbox.stats()
    figures.requests += stats["total_requests"]
    figures.faults.update(stats["faults_injected"])
    figures.tokens_issued += sum(stats["tokens_issued"].values())
    with sandbox_server.state.lock:
        SUITE.tokens.update(sandbox_server.state.tokens)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Time travel from :data:`START` (see :func:`tests.conftest.time_travel`); ``clock.slept`` lists the sleeps."""
    with time_travel(monkeypatch, START) as traveller:
        yield traveller


def first_event(trigger: Any) -> dict[str, Any]:
    """Run a trigger on a fresh event loop until its first event."""
    import asyncio

    return asyncio.run(next_event(trigger))


def warehouse_keys(conn_id: str, table: str) -> list[tuple[str, str]]:
    """Every (employer_id, month) of a warehouse table, duplicates included."""
    from airflow_provider_quota.utils.warehouse import get_db_hook

    return [(str(e), str(m)) for e, m in get_db_hook(conn_id).get_records(f"SELECT employer_id, month FROM {table}")]


def expected_usage(employer: str, month: str, now: float | None = None) -> dict[str, Any]:
    """What the sandbox serves for an employer and a month (its data is deterministic): the oracle."""
    from datetime import date

    from airflow_provider_quota.sandbox.state import quota_usage_data

    data = quota_usage_data(employer, date(int(month[2:]), int(month[:2]), 1), time.time() if now is None else now)
    return {
        "api_quota": data["apiQuota"],
        "requests_count": sum(item["requestsCount"] for item in data["apiUsage"]),
        "spend_amount": data["sponsoredJobsSpendAmount"],
        "currency_code": data["currencyCode"],
    }


def months_between(first: str, count: int) -> list[str]:
    """``count`` consecutive months in ``MMyyyy`` from ``first``."""
    month, year = int(first[:2]), int(first[2:])
    result = []
    for _ in range(count):
        result.append(f"{month:02d}{year}")
        month, year = (1, year + 1) if month == 12 else (month + 1, year)
    return result
