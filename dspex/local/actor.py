"""ModelServer: the actor that owns a local model's server process.

It starts ``python -m dspex.local.server`` on a fixed port (so the URL survives restarts), checks
every ``CHECK_EVERY`` seconds that the process lives and answers ``/health``, and crashes when it
does not, so its supervisor restarts both (a crashed or hung model is a supervised restart). The
server exits on its own when this actor's pipe closes, even if this actor is killed with -9.
"""

from __future__ import annotations

import select
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from typing import Any

from supervision import GenServer

CHECK_EVERY = 2.0
HEALTH_TIMEOUT = 10.0
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class GetModelURL:
    pass


@dataclass(frozen=True)
class _Check:
    pass


class ModelServer(GenServer):
    title_prefix = "dspex"

    def init(self, path: str, port: int, name: str, n_ctx: int = 2048, threads: int = 2) -> None:
        cmd = [sys.executable, "-m", "dspex.local.server", "--model", path, "--port", str(port), "--n-ctx", str(n_ctx),
               "--threads", str(threads), "--title", f"dspex: model {name} (server)"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            self._stop_server()
            raise RuntimeError(f"the model server for {name} did not start (exit code {self.proc.returncode})")
        self.url = line
        self.name = name
        self.actor_log.info("model_server_started", model=name, url=self.url, server_pid=self.proc.pid)
        self.send_after(CHECK_EVERY, _Check())

    def handle_call(self, request: Any) -> Any:
        if isinstance(request, GetModelURL):
            return self.url
        return super().handle_call(request)

    def handle_info(self, message: Any) -> None:
        if isinstance(message, _Check):
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"the model server of {self.name} exited with code {code}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=HEALTH_TIMEOUT):
                    pass
            except OSError as exc:
                raise RuntimeError(f"the model server of {self.name} does not answer: {exc}") from None
            self.send_after(CHECK_EVERY, _Check())

    def terminate(self, reason: str) -> None:
        self._stop_server()

    def _stop_server(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is None or proc.poll() is not None:
            return
        proc.stdin.close()  # the server exits at end-of-file
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
