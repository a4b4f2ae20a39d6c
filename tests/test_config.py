from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_is_valid() -> None:
    settings = load_settings(ROOT / "config.yaml", env={})
    assert settings.channel == "console"
    assert settings.model.path is None  # the embedded model


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  pth: /x\n")
    with pytest.raises(ConfigError, match=r"model\.pth: unknown key"):
        load_settings(path, env={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("outbound:\n  split_chars: -5\n")
    with pytest.raises(ConfigError, match=r"outbound\.split_chars"):
        load_settings(path, env={})


def test_env_overrides_any_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("channel: console\n")
    settings = load_settings(
        path, env={"MOODBOT__MODEL__PATH": "/models/qwen", "MOODBOT__TRIGGERS__ALLOW_ROOMS": "[a@chatroom]"}
    )
    assert settings.model.path == "/models/qwen"
    assert settings.triggers.allow_rooms == ["a@chatroom"]


def test_env_override_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"outbound\.retries"):
        load_settings(None, env={"MOODBOT__OUTBOUND__RETRIES": "many"})


def test_model_shorthand(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: embedded\n")
    assert load_settings(path, env={}).model.path is None
    path.write_text("model: /models/qwen.gguf\n")
    assert load_settings(path, env={}).model.path == "/models/qwen.gguf"


@pytest.mark.parametrize("content", ["- a\n- b\n", "a: [unclosed\n"])
def test_malformed_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_settings(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml", env={})
