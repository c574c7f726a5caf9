"""``marketpulse serve`` flags: listed in --help, over the environment, validated like it.

The order flags > environment > ``.env`` > defaults: ``test_settings_sources.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marketpulse.cli import main, make_parser, serve_settings
from marketpulse.config import ENV_FILE_VAR, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting in the environment (the suite's MARKETPULSE_ENV_FILE, no dotenv, stays)."""
    for name in list(os.environ):
        if name.startswith("MARKETPULSE_") and name != ENV_FILE_VAR:
            monkeypatch.delenv(name)


def settings_for(*argv: str) -> Settings:
    return serve_settings(make_parser().parse_args(["serve", *argv]))


def test_help_lists_each_flag_with_its_default_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag, default, var in [
        ("--host", "127.0.0.1", "MARKETPULSE_HOST"),
        ("--port", "8000", "MARKETPULSE_PORT"),
        ("--data-source", "simulated", "MARKETPULSE_DATA_SOURCE"),
        ("--redis-url", "unset", "MARKETPULSE_REDIS_URL"),
        ("--market-interval", "30.0", "MARKETPULSE_MARKET_INTERVAL"),
        ("--log-level", "INFO", "MARKETPULSE_LOG_LEVEL"),
        ("--data-dir", ".marketpulse", "MARKETPULSE_DATA_DIR"),
    ]:
        assert flag in text
        assert f"(default: {default}; overrides {var})" in text


def test_flags_reach_the_settings() -> None:
    s = settings_for(
        "--port", "8001", "--host", "0.0.0.0", "--data-source", "yahoo, simulated",
        "--redis-url", "redis://127.0.0.1:6390/0", "--market-interval", "2.5",
        "--log-level", "debug", "--data-dir", "/tmp/mp",
    )  # fmt: skip
    assert (s.port, s.host, s.data_source) == (8001, "0.0.0.0", ("yahoo", "simulated"))
    assert (s.redis_url, s.market_interval) == ("redis://127.0.0.1:6390/0", 2.5)
    assert (s.log_level, s.data_dir) == ("DEBUG", "/tmp/mp")


def test_a_flag_wins_over_the_environment_and_the_rest_still_comes_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MARKETPULSE_PORT", "9000")
    monkeypatch.setenv("MARKETPULSE_DATA_SOURCE", "replay")
    s = settings_for("--port", "8001")
    assert (s.port, s.data_source) == (8001, ("replay",))
    assert settings_for().port == 9000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "abc"], "configuration error: --port: Input should be a valid integer"),
        (["--port", "70000"], "configuration error: --port: "),
        (["--data-source", "bogus"], "configuration error: --data-source: Value error, unknown"),
        (["--market-interval", "0"], "configuration error: --market-interval: "),
        (["--log-level", "loud"], "configuration error: --log-level: Value error, log level"),
    ],
)
def test_a_bad_flag_exits_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert "Traceback" not in err


def test_a_bad_environment_value_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARKETPULSE_PORT", "abc")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--host", "127.0.0.1"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("configuration error: MARKETPULSE_PORT: ")


def test_the_suite_reads_no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tests/conftest.py`` empties MARKETPULSE_ENV_FILE for the run (subprocesses inherit it):
    a developer's ``.env`` in the working directory changes no test."""
    assert os.environ.get(ENV_FILE_VAR) == ""
    (tmp_path / ".env").write_text("MARKETPULSE_PORT=8101\n")
    monkeypatch.chdir(tmp_path)
    assert settings_for().port == 8000
