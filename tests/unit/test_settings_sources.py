"""Where a setting comes from: a flag, else the environment, else ``.env``, else the default.

Each test runs in its own working directory (``.env`` is read from there) with no
``MARKETPULSE_*`` setting in the environment and, unless it says otherwise, no
``MARKETPULSE_ENV_FILE`` either: the file read is ``./.env``, as for a user.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marketpulse.cli import main, make_parser, serve_settings
from marketpulse.config import ENV_FILE_VAR, Settings
from marketpulse.market.cache import CacheManager


@pytest.fixture(autouse=True)
def user_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("MARKETPULSE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_env(path: Path, **values: str) -> None:
    lines = ["# marketpulse settings, as a user edits them", "OTHER_TOOL_SETTING=ignored"]
    path.write_text(
        "\n".join([*lines, *(f"MARKETPULSE_{k.upper()}={v}" for k, v in values.items())])
    )


def serve_with(*argv: str) -> Settings:
    return serve_settings(make_parser().parse_args(["serve", *argv]))


def test_flags_win_over_the_environment_which_wins_over_dotenv_over_the_defaults(
    user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(
        user_dir / ".env",
        port="8101", data_source="replay", seed="7", redis_url="redis://127.0.0.1:6390/0",
    )  # fmt: skip
    monkeypatch.setenv("MARKETPULSE_PORT", "8102")
    monkeypatch.setenv("MARKETPULSE_DATA_SOURCE", "yahoo,simulated")
    s = serve_with("--port", "8103")
    assert s.port == 8103  # the flag, over the environment and .env
    assert s.data_source == ("yahoo", "simulated")  # the environment, over .env
    assert (s.seed, s.redis_url) == (7, "redis://127.0.0.1:6390/0")  # .env, over the defaults
    assert (s.market_interval, s.host) == (30.0, "127.0.0.1")  # the defaults
    assert serve_with().port == 8102
    monkeypatch.delenv("MARKETPULSE_PORT")
    assert serve_with().port == 8101


def test_without_dotenv_the_defaults_apply(user_dir: Path) -> None:
    assert not (user_dir / ".env").exists()
    s = Settings()
    assert (s.port, s.seed, s.redis_url, s.data_source) == (8000, 42, None, ("simulated",))


def test_the_library_classes_read_dotenv_too(user_dir: Path) -> None:
    """``CacheManager()`` (no arguments) uses the settings' Redis, ``.env``'s included."""
    write_env(user_dir / ".env", redis_url="redis://127.0.0.1:6390/3")
    assert Settings().client_redis_url() == "redis://127.0.0.1:6390/3"
    assert CacheManager().url == "redis://127.0.0.1:6390/3"


def test_env_file_variable_names_another_file_or_none(
    user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(user_dir / ".env", port="8101")
    write_env(user_dir / "prod.env", port="8201")
    monkeypatch.setenv(ENV_FILE_VAR, str(user_dir / "prod.env"))
    assert Settings().port == 8201
    monkeypatch.setenv(ENV_FILE_VAR, "")  # what the suite sets for every test: no dotenv file
    assert Settings().port == 8000
    monkeypatch.setenv(ENV_FILE_VAR, str(user_dir / "missing.env"))
    assert Settings().port == 8000  # a missing file is no error


def test_a_bad_value_in_dotenv_is_named_with_the_file(
    user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(user_dir / ".env", port="abc")
    with pytest.raises(SystemExit) as info:
        main(["serve"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("configuration error: MARKETPULSE_PORT (in .env): ")


def test_dotenv_example_copied_to_dotenv_gives_the_defaults(user_dir: Path) -> None:
    """``cp .env.example .env``: every value in it parses, and each is the default."""
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (user_dir / ".env").write_text(example.read_text())
    assert Settings().model_dump() == Settings(_env_file=None).model_dump()


def test_every_setting_is_in_the_env_example_and_the_readme() -> None:
    """A setting added without its line in .env.example or the README's configuration table is
    one a user cannot find (MARKETPULSE_MARKET_HOURS was missing from .env.example once)."""
    root = Path(__file__).resolve().parents[2]
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    for name in Settings.model_fields:
        var = f"MARKETPULSE_{name.upper()}"
        assert f"{var}=" in example, f"{var} is not in .env.example"
        assert f"| `{var}`" in readme or f"/ `{var}` |" in readme, (
            f"{var} is not in the README's configuration table"
        )
