"""The command line as a user runs it (config errors need no model, so these stay fast)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from bot.app import Application
from bot.channels.console import ConsoleSender, run_console
from bot.clock import ManualClock
from bot.config import Settings
from bot.store import Store
from tests.fakes import FakeEngine

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path = ROOT, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_bad_config_is_a_clear_error_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  temperature: 3\n")
    result = _cli("--config", str(config), "chat")
    assert result.returncode == 2
    assert "model.temperature: unknown key" in result.stderr and "Traceback" not in result.stderr


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("classify", str(tmp_path / "none.txt"))
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def test_classify_refuses_a_config_that_serves_the_model_elsewhere(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    config = tmp_path / "c.yaml"
    config.write_text("model: {backend: openai, base_url: 'http://127.0.0.1:9/v1'}\n")
    result = _cli("--config", str(config), "classify", str(source))
    assert result.returncode == 2 and "MOODBOT__MODEL__BACKEND=local" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {tmp_path / 'qwen'}\n")
    result = _cli("--config", str(config), "chat", stdin="hi\n")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "never downloads" in result.stderr
    assert "Traceback" not in result.stderr


async def test_console_chat_with_piped_input(store: Store) -> None:
    sender = ConsoleSender()
    app = Application(Settings.model_validate({"schedule": {"enabled": False}}), FakeEngine(), sender, ManualClock(), store)
    stdin = io.StringIO("今天心情很低落\n\n\x00\nI'm so happy!\n")
    out = io.StringIO()
    assert await run_console(app, sender, stdin, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "you> 今天心情很低落"
    assert "negative" in lines[1] and "😟" in lines[1] and "comfort" in lines[1]
    assert lines[2].startswith("bot> [comfort]")
    assert "empty after clean-up" in out.getvalue()
    assert "positive" in lines[-2] and "celebrate" in lines[-2]


async def test_console_says_when_the_mood_is_unknown(store: Store) -> None:
    from bot.errors import EngineError

    sender = ConsoleSender()
    app = Application(Settings.model_validate({"schedule": {"enabled": False}}), FakeEngine(fail=EngineError("down")),
                      sender, ManualClock(), store)
    out = io.StringIO()
    assert await run_console(app, sender, io.StringIO("hello\n"), out) == 0
    lines = out.getvalue().splitlines()
    assert "mood unknown" in lines[1] and "neutral" not in lines[1]
    assert lines[2] == "bot> " + Settings().reply.unavailable["en"]
