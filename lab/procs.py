"""Processes the lab starts inside its namespaces, each logged to a file and stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Proc", "ProcessGroup"]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Everything one lab started; `stop_all` in reverse start order."""

    log_dir: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, netns: str, argv: Sequence[str], *,
              env: Mapping[str, str] | None = None) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with log.open("ab") as out:
            # `ip netns exec` execs the command: the PID we hold is the server's own.
            popen = subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=full_env, start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop(sig=sig)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def wait_alive(self, name: str, seconds: float = 1.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                return False
            time.sleep(0.05)
        return self.procs[name].alive()
