"""`paygate serve` on the embedded PostgreSQL: SIGTERM stops the database with it, and a
restart after SIGKILL (database left running, a stale handle) serves the same data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.servers import free_port

PAYGATE = Path(sys.executable).with_name("paygate")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): read its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][:1] != "Z"


class Paygate:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
        env.update(PAYGATE_DATA_DIR=str(self.data_dir), PAYGATE_PORT=str(self.port))
        log = (self.data_dir / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [str(PAYGATE), "serve", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.data_dir / "serve.log").read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("paygate serve did not become ready")

    def postgres_pid(self) -> int:
        return int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])

    def company_of_the_demo_login(self) -> str:
        password = (self.data_dir / "demo-login.txt").read_text().splitlines()[1].strip()
        tokens = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"email": "admin@demo.example.com", "password": password},
            timeout=10,
        )
        assert tokens.status_code == 200, tokens.text
        me = httpx.get(
            f"{self.url}/api/v1/me",
            headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
            timeout=10,
        )
        company_id: str = me.json()["company"]["id"]
        return company_id


@pytest.fixture
def paygate(tmp_path: Path) -> Iterator[Paygate]:
    server = Paygate(tmp_path / "var")
    server.data_dir.mkdir()
    try:
        yield server
    finally:
        # Nothing is left behind, whatever the test did.
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)
        pidfile = server.data_dir / "pgdata" / "postmaster.pid"
        if pidfile.exists() and _running(pid := server.postgres_pid()):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown


def test_sigterm_stops_the_embedded_postgres_and_sigkill_loses_nothing(paygate: Paygate) -> None:
    paygate.start("--demo")
    company = paygate.company_of_the_demo_login()
    first_postgres = paygate.postgres_pid()
    assert paygate.process is not None

    # Killed outright, paygate cannot stop its database; the next start takes it over.
    paygate.process.kill()
    paygate.process.wait(10)
    assert _running(first_postgres)
    paygate.start()
    assert paygate.company_of_the_demo_login() == company

    # Asked to stop, it stops the database too (the handle of the killed run notwithstanding).
    postgres = paygate.postgres_pid()
    paygate.process.send_signal(signal.SIGTERM)
    assert paygate.process.wait(10) == 0
    deadline = time.monotonic() + 10
    while _running(postgres) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(postgres), "the embedded PostgreSQL outlived paygate by 10 s"

    # And after a kill of both (a power cut, say), the stale pid file does not stop a start.
    paygate.start()
    assert paygate.company_of_the_demo_login() == company
    postgres = paygate.postgres_pid()
    paygate.process.kill()
    paygate.process.wait(10)
    os.kill(postgres, signal.SIGKILL)
    while _running(postgres):
        time.sleep(0.05)
    time.sleep(1)  # its backends notice and exit
    paygate.start()
    assert paygate.company_of_the_demo_login() == company
    postgres = paygate.postgres_pid()
    paygate.process.send_signal(signal.SIGINT)  # Ctrl-C in `make run`
    assert paygate.process.wait(10) == 0
    deadline = time.monotonic() + 10
    while _running(postgres) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(postgres)
