"""Real ``bitbybit`` processes on loopback for integration tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BITBYBIT = [sys.executable, "-m", "bitbybit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(*args: str, env: Mapping[str, str]) -> str:
    """Run a ``bitbybit`` command and return its standard output."""
    done = subprocess.run(
        [*BITBYBIT, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"bitbybit {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]


@contextmanager
def serve(database_url: str, log: Path, **extra_env: str) -> Iterator[Server]:
    """``bitbybit serve`` on a free port; stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    env = {"BITBYBIT_DATABASE_URL": database_url, **extra_env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*BITBYBIT, "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base_url, log, "bitbybit serve")
        yield Server(base_url, env, process)
    finally:
        stop(process)


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path, name: str) -> None:
    """Until ``base_url/healthz`` answers 200 (30 s at most); the log in the error if not."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: {log.read_text()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
