"""Serving with several worker processes, each with a listening socket of its own.

uvicorn's own `--workers` shares one listening socket between the processes: whichever
worker's event loop wakes first accepts every connection waiting, so a burst of keep-alive
connections (a load balancer's pool, a benchmark's clients) can all land on one worker while
the others idle. Here every worker binds its own socket with SO_REUSEPORT, and the kernel
spreads new connections over them evenly.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog
import uvicorn

logger = structlog.get_logger(__name__)

RESTART_PAUSE = 1.0  # a worker that keeps crashing is restarted at most once a second


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def tune_garbage_collector() -> None:
    """For a serving process, once its modules are imported: what exists now (modules,
    classes, compiled statements) is frozen out of the cyclic collector's scans, and the
    youngest generation is collected every 50,000 allocations instead of 700. A request
    allocates thousands of objects (ORM states, SQLAlchemy's per-transaction maps), so the
    default collected several times per request and rescanned the whole heap often. Cycles
    are still collected; bench/payments.py's soak checks memory stays flat."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def _run_worker(host: str, port: int, app: str) -> None:
    importlib.import_module(app.partition(":")[0])  # imported before the freeze
    tune_garbage_collector()
    sock = reuseport_socket(host, port)
    config = uvicorn.Config(app, factory=True, log_level="warning", backlog=2048)
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int, app: str = "paygate.app:create_app") -> None:
    """Run `workers` processes serving the ASGI app factory `app` until SIGINT or SIGTERM;
    restart one that dies."""
    spawn = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = spawn.Process(target=_run_worker, args=(host, port, app), name="paygate-worker")
        process.start()
        return process

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(workers)]
    while not stopping:
        time.sleep(0.2)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                logger.error("worker_exited", pid=process.pid, exitcode=process.exitcode)
                time.sleep(RESTART_PAUSE)
                processes[index] = start()
    for process in processes:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # uvicorn finishes the requests in flight, then exits
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
