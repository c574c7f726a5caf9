"""Settings: the only reader of the environment (prefix ``MARKETPULSE_``) and of ``.env``.

Where a setting comes from, first found wins: the arguments ``Settings`` is built with (``serve``'s
flags), the environment, the dotenv file, the default. The dotenv file is ``.env`` in the working
directory, or the one ``MARKETPULSE_ENV_FILE`` names (read from the environment only; empty: no
file, which is what the test suite sets); a missing file is no error.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from marketpulse.market.fx import BASE_CURRENCIES, is_base_currency

DATA_SOURCES = frozenset({"simulated", "replay", "yahoo", "nse"})
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_WATCHLIST = ("AAPL", "MSFT", "GOOGL", "TCS.NS", "INFY.NS")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENV_FILE = ".env"
ENV_FILE_VAR = "MARKETPULSE_ENV_FILE"


def env_file() -> str | None:
    """The dotenv file settings are read from (under the environment): ``MARKETPULSE_ENV_FILE``
    if set (empty: none), else ``.env``, relative to the working directory."""
    return os.environ.get(ENV_FILE_VAR, ENV_FILE) or None


class MetricDelay:
    """Simulated compute time per metric: uniform in [lo, hi] seconds (0 disables)."""

    __slots__ = ("hi", "lo")

    def __init__(self, lo: float, hi: float) -> None:
        if lo < 0 or hi < lo:
            raise ValueError(f"metric delay must be 0 <= lo <= hi, got {lo}-{hi}")
        self.lo = lo
        self.hi = hi

    @classmethod
    def parse(cls, text: str) -> MetricDelay:
        parts = text.strip().split("-")
        try:
            if len(parts) == 1:
                v = float(parts[0])
                return cls(v, v)
            if len(parts) == 2:
                return cls(float(parts[0]), float(parts[1]))
        except ValueError:
            pass
        raise ValueError(f"metric delay must be 'lo-hi' or one number, got {text!r}")

    def __repr__(self) -> str:
        return f"MetricDelay({self.lo}, {self.hi})"


class Settings(BaseSettings):
    """Every knob of the service; mirrored in ``.env.example``."""

    model_config = SettingsConfigDict(env_prefix="MARKETPULSE_", env_file=ENV_FILE, extra="ignore")

    redis_url: str | None = None
    cache_url: str | None = None
    data_dir: str = ".marketpulse"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_source: Annotated[tuple[str, ...], NoDecode] = ("simulated",)
    market_interval: float = Field(default=30.0, gt=0)
    metric_delay: Annotated[str, NoDecode] = "2-5"
    session_ttl: int = Field(default=86400, gt=0)
    results_cap: int = Field(default=500, gt=0)
    max_restarts: int = Field(default=3, ge=0)
    # a run whose worker has not heartbeated for this long is taken over (seconds)
    run_reclaim_s: float = Field(default=10.0, ge=0.5, le=600.0)
    run_stream_maxlen: int = Field(default=100_000, ge=1000)
    workers_in_process: bool = True  # false: a web-only process (run `marketpulse worker`s)
    replay_start: str = "2012-03-01"
    replay_step: int = Field(default=1, ge=0)
    seed: int = 42
    # the currency a new session is valued in unless it names one (ISO 4217)
    base_currency: str = "USD"
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    cache_ttl: int = Field(default=300, gt=0)
    monitor_interval: float = Field(default=5.0, gt=0)
    # live sources: no call for a symbol whose exchange is closed (market/calendar.py)
    market_hours: bool = True
    # monitored on a first run (no symbols ever chosen); "" or "none" disables
    watchlist: Annotated[tuple[str, ...], NoDecode] = DEFAULT_WATCHLIST
    system_interval: float = Field(default=2.0, gt=0)  # seconds between /ws/dashboard reports
    redis_max_connections: int = Field(default=64, ge=4)
    webhook_url: str | None = None
    # a fired alert's delivery not acknowledged for this long is retried or taken over (seconds)
    alert_reclaim_s: float = Field(default=10.0, ge=0.5, le=600.0)
    alert_delivery_attempts: int = Field(default=10, ge=1, le=100)  # then given up, logged
    # health-warning limits (observability/health.py); 0 disables a limit
    perf_provider_latency_ms: float = Field(default=2000.0, ge=0)
    perf_loop_lag_ms: float = Field(default=250.0, ge=0)
    perf_memory_mb: float = Field(default=1024.0, ge=0)
    perf_alerts_cap: int = Field(default=50, gt=0)
    # limits on hostile or broken clients (docs/contracts.md, "Limits")
    ws_msg_rate: float = Field(default=20.0, gt=0)  # per socket; burst 2x; then rate_limited
    ws_msg_hard_rate: float = Field(default=100.0, gt=0)  # per socket; burst 2x; then 1008
    ws_max_per_session: int = Field(default=8, ge=1)  # open session sockets, this instance
    ws_max_per_client: int = Field(default=64, ge=1)  # open sockets per client address
    ws_send_buffer: int = Field(default=1 << 20, ge=64 << 10)  # bytes unsent; then 1008
    ws_ping_interval: float = Field(default=20.0, gt=0)  # seconds between server pings
    ws_ping_timeout: float = Field(default=20.0, gt=0)  # no pong by then: closed (1011)
    http_max_body: int = Field(default=64 << 10, ge=1024)  # bytes; past it 413
    max_alerts: int = Field(default=1000, ge=1)  # alert conditions; past it 409
    max_symbols: int = Field(default=200, ge=1)  # monitored symbols; past it 409
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # named delivery channels (issue 20; alerts/channels.py): e-mail goes through this server
    smtp_host: str | None = None  # unset: e-mail channels answer "no SMTP server"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None  # with smtp_password: AUTH (after STARTTLS)
    smtp_password: str | None = None
    smtp_from: str = "marketpulse@localhost"
    smtp_starttls: bool = True  # upgrade with STARTTLS (required when true)
    smtp_ca_file: str | None = None  # a CA bundle for the server's certificate (else the system's)
    max_channels: int = Field(default=50, ge=1, le=1000)  # named channels; past it 409
    channel_timeout_s: float = Field(default=10.0, gt=0, le=120)  # one send on one channel

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments (flags) over the environment over the dotenv file over the defaults."""
        if ENV_FILE_VAR in os.environ:  # it names the file (or none), whatever _env_file says
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=env_file())
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("data_source", mode="before")
    @classmethod
    def _split_sources(cls, v: object) -> tuple[str, ...]:
        items = [s.strip() for s in v.split(",")] if isinstance(v, str) else list(v)  # type: ignore[call-overload]
        names = tuple(str(s) for s in items if s)
        unknown = [n for n in names if n not in DATA_SOURCES]
        if not names or unknown:
            raise ValueError(
                f"unknown data source(s) {unknown}; choose from {sorted(DATA_SOURCES)}"
            )
        return names

    @field_validator("base_currency", mode="before")
    @classmethod
    def _currency(cls, v: object) -> str:
        code = str(v).strip().upper()
        if not is_base_currency(code):
            codes = ", ".join(sorted(BASE_CURRENCIES))
            raise ValueError(f"{v!r} cannot be a base currency; choose one of {codes}")
        return code

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> tuple[str, ...]:
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        return tuple(v)  # type: ignore[arg-type]

    @field_validator("watchlist", mode="before")
    @classmethod
    def _split_watchlist(cls, v: object) -> tuple[str, ...]:
        from marketpulse.market.symbols import parse_symbol  # the one symbol rule

        if isinstance(v, str):
            items = [] if v.strip().lower() == "none" else v.split(",")
        else:
            items = list(v)  # type: ignore[call-overload]
        names = [str(s).strip() for s in items]
        return tuple(dict.fromkeys(parse_symbol(n) for n in names if n))

    @field_validator("metric_delay")
    @classmethod
    def _check_delay(cls, v: str) -> str:
        MetricDelay.parse(v)
        return v

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, v: str) -> str:
        if v.upper() not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {v!r}")
        return v.upper()

    @property
    def delay(self) -> MetricDelay:
        return MetricDelay.parse(self.metric_delay)

    def client_redis_url(self) -> str:
        """The Redis that library objects built without arguments (``AlertManager()``,
        ``CacheManager()``) use: ``redis_url``, else the local default port (they cannot start
        an embedded server as ``marketpulse serve`` does)."""
        return self.redis_url or LOCAL_REDIS_URL

    def origins(self) -> frozenset[str]:
        """Allowed WebSocket origins: the configured list, else the service's own origin."""
        if self.allowed_origins:
            return frozenset(self.allowed_origins)
        own = {f"http://{self.host}:{self.port}"}
        if self.host in ("127.0.0.1", "0.0.0.0", "localhost"):
            own |= {f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}"}
        return frozenset(own)
