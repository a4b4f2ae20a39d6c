from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from bot.clock import ManualClock
from bot.config import Settings
from bot.store import Store

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


def _project_markers() -> tuple[str, ...]:
    # pyproject.toml's own markers, not getini("markers"): plugins add theirs, asyncio's on every async test
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    return tuple(line.split(":", 1)[0].strip() for line in declared)


MARKED = _project_markers()


@pytest.fixture(scope="session")
def _scratch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def _no_home_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tiny test models' serving snapshots, prefix caches and kernel builds out of the user's
    ~/.cache/moodbot (the default model.cache_dir).

    HOME rather than MOODBOT__MODEL__CACHE_DIR: a ModelSettings built in code (train.heads, tests)
    takes its defaults without reading the environment, but every "~" follows HOME,
    subprocesses included. One home for the session, so the C kernels are built once. Tests of the
    real embedded model, the gateway, the browser and the servers keep the real home: they reuse the
    model converted there once (slow), node modules and browsers installed there."""
    if any(request.node.get_closest_marker(name) for name in MARKED):
        return
    # libpq finds a password or service for MOODBOT_TEST_PG_URL in the real home
    for variable, name in (("PGPASSFILE", ".pgpass"), ("PGSERVICEFILE", ".pg_service.conf")):
        if variable not in os.environ and (Path.home() / name).exists():
            monkeypatch.setenv(variable, str(Path.home() / name))
    monkeypatch.setenv("HOME", str(request.getfixturevalue("_scratch_home")))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'test.db'}")
    yield db
    db.close()


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from tests.tiny_models import build_tiny

    base = tmp_path_factory.mktemp("tiny")
    yield {family: build_tiny(family, base / family) for family in ("qwen2", "gemma3")}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server: MOODBOT_TEST_PG_URL if set, else a throwaway one on 127.0.0.1.

    Skipped only where no server can be had and MOODBOT_REQUIRE_PG is unset; CI sets it."""
    import os

    url = os.environ.get("MOODBOT_TEST_PG_URL")
    if url:
        yield url
        return
    from tests.postgres import TempPostgres

    try:
        server = TempPostgres()
        url = server.start()
    except Exception as exc:  # no binaries, no postgres user...
        if os.environ.get("MOODBOT_REQUIRE_PG"):
            raise
        pytest.skip(f"no PostgreSQL server available: {exc}")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        db = Store(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        from sqlalchemy import text

        db = Store(request.getfixturevalue("postgres_url"))
        with db.engine.begin() as conn:  # each test starts from empty tables
            conn.execute(text("TRUNCATE mood_points, memory, alerts, contacts, ended_sessions RESTART IDENTITY"))
    yield db
    db.close()


@pytest.fixture(scope="session")
def embedded_gguf_path() -> Path:
    from bot.config import ModelSettings
    from bot.model.loader import embedded_gguf

    return embedded_gguf(Path(ModelSettings().cache_dir).expanduser())


@pytest.fixture(scope="session")
def llama_server(embedded_gguf_path: Path) -> Iterator[Any]:
    """The llama.cpp server (llama-cpp-python) serving the embedded GGUF on a free loopback port.

    Skipped where llama-cpp-python is not installed, unless MOODBOT_REQUIRE_LLAMA_SERVER is set (CI)."""
    import os

    from tests.llama_server import LlamaServer, available

    if not available():
        if os.environ.get("MOODBOT_REQUIRE_LLAMA_SERVER"):
            raise RuntimeError("llama-cpp-python[server] is not installed (.ci/llama-wheel installs it)")
        pytest.skip("llama-cpp-python[server] is not installed (.ci/llama-wheel builds and installs it)")
    server = LlamaServer(embedded_gguf_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
