"""A real redis-server for the scale tests: started on a free loopback port, stopped after.

The session shares one server (``appendonly no``, nothing saved); each test
gets its own namespace. Tests that kill Redis start their own, persisting
with ``appendonly yes`` and ``appendfsync always`` so that an acknowledged
write survives the kill. When ``redis-server`` is missing it is installed
with apt-get if this session may (root, apt-get present), else the tests are
skipped with a message saying so.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the scale tests need the redis client: "
                    "pip install -e '.[dev]' (or 'agentauthz[redis]')")

import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found is not None:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        for command in (["apt-get", "install", "-y", "-qq", "redis-server"],
                        ["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "redis-server"]):
            subprocess.run(command, capture_output=True, check=False, timeout=600)
            found = shutil.which("redis-server")
            if found is not None:
                return found
    return None


class RedisServer:
    """One redis-server process on 127.0.0.1 that a test may stop, kill and start again."""

    def __init__(self, binary: str, directory: Path, *, persistent: bool) -> None:
        self.binary = binary
        self.directory = directory
        self.persistent = persistent
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                       else ["--appendonly", "no"])
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *persistence, "--dir", str(self.directory), "--daemonize", "no",
             "--protected-mode", "yes", "--loglevel", "warning",
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log")
                raise RuntimeError("redis-server did not start: "
                                   + (log.read_text() if log.exists() else "no log"))
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save; what survives is what the append-only file holds."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = _redis_server()
    if binary is None:
        pytest.skip("redis-server is not installed and could not be installed here "
                    "(install the Debian package: apt-get install redis-server)")
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, persisting every acknowledged write, for killing."""
    server = RedisServer(redis_binary, tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()


_counter = itertools.count()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"t{os.getpid()}-{next(_counter)}-{request.node.name}")[:64]
