"""Other paygate processes sharing the test database (and Redis): what a second node sees.

`start_peer` runs `uvicorn paygate.app:create_app --factory` as a real subprocess on a free
loopback port, configured only through PAYGATE_ environment variables, and waits for
/healthz in a bounded loop.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from paygate.settings import Settings
from tests.fakes.servers import free_port

TEST_REDIS_URL = os.environ.get("PAYGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class Peer:
    base_url: str
    log: Path

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)


def require_redis() -> None:
    """Skip (saying why) when no Redis answers at PAYGATE_TEST_REDIS_URL."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {TEST_REDIS_URL}")


def unique_key_prefix() -> str:
    return f"paygate-test-rev-{secrets.token_hex(6)}"


@contextmanager
def redis_test_settings(settings: Settings) -> Iterator[Settings]:
    """`settings` with Redis for revocations and rate limits under a prefix of this run's
    own; its keys are deleted afterwards. Skips when no Redis answers."""
    require_redis()
    prefix = unique_key_prefix()
    yield settings.model_copy(
        update={
            "redis_url": TEST_REDIS_URL,
            "revocation_key_prefix": prefix,
            "rate_limit_key_prefix": f"{prefix}-rl",
        }
    )
    delete_keys(prefix)
    delete_keys(f"{prefix}-rl")


def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@contextmanager
def start_peer(settings: Settings, log_dir: Path, *, redis_url: str | None) -> Iterator[Peer]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    assert settings.database_url is not None
    env.update(
        {
            "PAYGATE_MODE": "test",
            "PAYGATE_DATABASE_URL": settings.database_url,
            "PAYGATE_RUN_WORKER": "false",
            "PAYGATE_JWT_SECRET": settings.jwt_secret.get_secret_value(),
            "PAYGATE_MASTER_KEYS": settings.master_keys_text(),
            "PAYGATE_REVOCATION_KEY_PREFIX": settings.revocation_key_prefix,
            "PAYGATE_DATA_DIR": str(log_dir / "var"),
            "PAYGATE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
    )
    if redis_url is not None:
        env["PAYGATE_REDIS_URL"] = redis_url
    log = log_dir / f"peer-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "paygate.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the peer exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the peer did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Peer(base_url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
