from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from bot.clock import ManualClock
from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT.parent / "shared" / "eval"


@pytest.fixture(autouse=True)
def _network_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only loopback connections: a test that reaches for a hub or the internet fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")) and self.family != socket.AF_UNIX:
            raise RuntimeError(f"network access to {address} is not allowed in tests")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from tests.tiny_models import build_tiny

    base = tmp_path_factory.mktemp("tiny")
    yield {family: build_tiny(family, base / family) for family in ("qwen2", "gemma3")}
