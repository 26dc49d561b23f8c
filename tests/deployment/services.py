"""The servers the deployment uses but does not own: a database of its own on PostgreSQL, and Redis."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: The PostgreSQL server of the machine (the test suite's), and Redis where the machine runs one.
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _with_database(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))


@contextlib.contextmanager
def postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """
    Create a database named ``<prefix>_<random>`` on the server and drop it afterwards.

    :param server_url: any database URL on the server (``postgresql://user@host:port/db``).
    :param prefix: the name's prefix, e.g. ``quota_it``.
    :return: the new database's URL (``postgresql://``).
    """
    import psycopg2

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = psycopg2.connect(_with_database(server_url, "postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(server_url, name)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@dataclass
class RedisBroker:
    """Redis as Celery's broker: a database number of the run's own, on a server that may be the run's."""

    url: str
    database: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def broker_url(self) -> str:
        return f"{self.url}/{self.database}"

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.broker_url, socket_timeout=5).flushdb()


@contextlib.contextmanager
def redis_broker(url: str, log_dir: Path) -> Iterator[RedisBroker]:
    """
    Redis for Celery: the machine's when it answers, else a ``redis-server`` of this run on a free port.

    The run takes an empty database number (1-15) and empties it again at the end.
    """
    import redis

    process = None
    if not redis_answers(url):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(f"no Redis answers at {url} and there is no redis-server to start one")
        port = free_port()
        log = (log_dir / "redis.log").open("wb")
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (see {log_dir / 'redis.log'})")
            time.sleep(0.2)
    try:
        empty = [number for number in range(15, 0, -1) if redis.Redis.from_url(f"{url}/{number}").dbsize() == 0]
        if not empty:
            raise RuntimeError(f"every database 1-15 of the Redis at {url} holds keys: none is free for the broker")
        database = empty[0]
        broker = RedisBroker(url=url, database=database, process=process)
        try:
            yield broker
        finally:
            with contextlib.suppress(redis.RedisError):
                broker.flush()
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
