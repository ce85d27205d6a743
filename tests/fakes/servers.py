"""Run emulators on free 127.0.0.1 ports for the length of a `with` block.

- `serve_asgi(app)`: any ASGI app under uvicorn in a background thread.
- `serve_localstripe()`: localstripe in a subprocess (its aiohttp loop and slow
  pickling stay out of the test process), with its store private and empty.

Both bind the socket themselves before starting the server, so the port is never
raced for, wait a bounded time for the first answer, and shut down cleanly.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO

import httpx
import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 20.0


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    return f"http://{HOST}:{free_port()}"


@contextlib.contextmanager
def serve_asgi(app: ASGIApp, *, startup_timeout: float = STARTUP_TIMEOUT_SECONDS) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread; yields its base URL."""
    sock = _bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # A request parked by a delay knob must not hold up the shutdown for long.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    # uvicorn installs signal handlers only in the main thread, so a thread is fine.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the ASGI test server stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI test server did not start in {startup_timeout} s")
            time.sleep(0.02)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()


# Runs in the subprocess: serve localstripe on the inherited, already listening socket.
_LOCALSTRIPE_BOOT = """
import socket, sys
from aiohttp import web
import localstripe.resources
import localstripe.server

if sys.argv[2] == "0":
    # Keep the store in memory: the pickle file is shared by every localstripe
    # on the machine, and rewriting it on each write makes localstripe slow.
    localstripe.resources.Store.dump_to_disk = lambda self: None
sock = socket.socket(fileno=int(sys.argv[1]))
web.run_app(localstripe.server.app, sock=sock, print=None, access_log=None)
"""


@contextlib.contextmanager
def serve_localstripe(
    *, persist: bool = False, startup_timeout: float = STARTUP_TIMEOUT_SECONDS
) -> Iterator[str]:
    """Run localstripe in a subprocess on a free loopback port; yields its base URL.

    Its store starts empty (DELETE /_config/data). With `persist=False` (the default)
    it never writes the machine-wide /tmp/localstripe.pickle.
    """
    sock = _bound_socket()
    port = sock.getsockname()[1]
    base_url = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _LOCALSTRIPE_BOOT, str(sock.fileno()), "1" if persist else "0"],
            pass_fds=(sock.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        # The child has its own copy of the listening socket.
        sock.close()
        try:
            _wait_for_localstripe(base_url, process, stderr, startup_timeout)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_for_localstripe(
    base_url: str,
    process: subprocess.Popen[bytes],
    stderr: IO[bytes],
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}: {_read(stderr)}")
        try:
            # Emptying the store doubles as the readiness probe.
            response = httpx.delete(f"{base_url}/_config/data", timeout=2)
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"localstripe did not start in {timeout} s: {_read(stderr)}")
        time.sleep(0.1)


def _read(stream: IO[bytes]) -> str:
    try:
        stream.seek(0)
        data = stream.read()
    except OSError:
        return ""
    return data.decode(errors="replace")[-2000:]
