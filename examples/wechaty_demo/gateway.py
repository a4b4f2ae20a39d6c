"""Starts the Node puppet-service gateway over wechaty-puppet-mock (tests/gateway) on 127.0.0.1
and drives its fake WeChat world over HTTP. Used by the end-to-end tests, the wechaty demo
(`python -m examples.wechaty_demo`) and the soak test (`python -m bench.soak`).

It lives outside the runtime package on purpose: the gateway is Node code with npm dependencies
that a `pip install` cannot bring, so it runs from a source checkout only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bot.errors import MoodbotError
from bot.mock_wechat import free_port

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "tests" / "gateway"
TOKEN = "insecure_moodbot_test"


class GatewayError(MoodbotError):
    """The mock gateway could not be started or driven."""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Gateway:
    def __init__(self, token: str = TOKEN, extra_contacts: int = 0) -> None:
        if not (GATEWAY_DIR / "node_modules" / "wechaty-puppet-mock").exists():
            raise GatewayError("the mock gateway is not installed: run `make gateway` (npm install in tests/gateway)")
        node = shutil.which("node")
        if node is None:
            raise GatewayError("node (Node.js 20) is needed for the mock gateway")
        self.node: str = node
        self.port = free_port()
        self.control_port = free_port()
        self.token = token
        self.extra_contacts = extra_contacts  # people u1 .. uN besides alice, bob, carol and admin
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = GATEWAY_DIR / f".gateway-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PORT": str(self.port), "CONTROL_PORT": str(self.control_port), "TOKEN": self.token,
               "EXTRA_CONTACTS": str(self.extra_contacts)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.node, "server.mjs"], cwd=GATEWAY_DIR, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not (_port_open(self.port) and _port_open(self.control_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise GatewayError(f"gateway did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}", data=data, method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise GatewayError(f"gateway {path}: {exc.read().decode(errors='replace')}") from None

    def say(self, **message: Any) -> str:
        return str(self._call("POST", "/say", message)["id"])

    def redeliver(self, message_id: str) -> None:
        self._call("POST", "/redeliver", {"id": message_id})

    def sent(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/sent"))

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health"))
