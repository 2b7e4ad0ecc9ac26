"""A real ``hundredx serve`` for the tests: its own data directory and port, stopped after.

``HX_BIN`` names the binary (the workspace's debug build by default: ``cargo build`` first, or
run these through ``cargo test --test clients``)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``serve`` on a fixed port, so a restart keeps the URL (and the data directory)."""

    def __init__(self) -> None:
        self.bin = os.environ.get("HX_BIN", str(ROOT / "target" / "debug" / "hundredx"))
        if not Path(self.bin).exists():
            pytest.fail(f"{self.bin} not found: run `cargo build` first (or set HX_BIN)")
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [self.bin, "serve", "--data-dir", os.path.join(self.dir.name, "data"),
                "--listen", f"127.0.0.1:{self.port}", "--feed", "synthetic",
                "--ticks-per-second", "50"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert "listening on http://" in line, f"serve did not start: {line!r}"
        # Keep reading: a full pipe would stall it.
        threading.Thread(target=lambda p=self.proc: [None for _ in p.stdout], daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        deadline = time.time() + 20
        while True:
            try:
                self.start()
                return
            except AssertionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)  # the port is released a moment after the process ends


@pytest.fixture()
def server():
    s = Server()
    s.start()
    yield s
    s.stop()
    s.dir.cleanup()
