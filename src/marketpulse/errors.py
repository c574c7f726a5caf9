"""One exception tree for the whole service.

    MarketPulseError
    ├── SessionError
    │   ├── SessionNotFound        missing, expired, or a wrong/foreign token (indistinguishable)
    │   ├── SessionExists          POST with an id already taken
    │   ├── NotInPortfolio         analyze a ticker the session does not hold
    │   └── SessionBusy            a change raced by concurrent changes past the retry bound
    ├── AlertNotFound              no alert with this id
    ├── SymbolNotMonitored         DELETE of a symbol that is not monitored
    ├── ChannelNotFound            no delivery channel with this name
    ├── ChannelExists              POST of a channel whose name is taken
    ├── ValidationFailed           bad input that pydantic did not catch (code, message)
    ├── MarketDataError
    │   ├── QuoteUnavailable       no source could give a quote (and no stale one either)
    │   ├── TransientSourceError   worth retrying: 429, 5xx, timeout, connection error
    │   ├── PermanentSourceError   not worth retrying: unknown symbol, bad payload
    │   ├── InvalidQuote           a quote that failed validation (NaN, high < low, ×100 jump)
    │   ├── FxUnavailable          no source has a rate for a currency pair (never 1:1)
    │   └── CircuitOpen            the provider's breaker is open
    ├── InsufficientHistory        fewer common returns than a metric needs
    ├── NotReplayable              a backtest's range without history, or its alert missing
    └── RedisUnavailable           Redis did not answer (an unknown outcome, never "failed")

The API maps each to ``{"error": {"code", "message"}}`` with a fitting status.
"""

from __future__ import annotations


class MarketPulseError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()


class SessionError(MarketPulseError):
    code = "session_error"
    status = 400


class SessionNotFound(SessionError):
    """Session not found."""

    code = "session_not_found"
    status = 404


class SessionExists(SessionError):
    """A session with this id already exists."""

    code = "session_exists"
    status = 409


class NotInPortfolio(SessionError):
    """The ticker is not one of the session's holdings."""

    code = "not_in_portfolio"
    status = 400


class SessionBusy(SessionError):
    """The session kept changing while this change was being valued; try again."""

    code = "session_busy"
    status = 409


class AlertNotFound(MarketPulseError):
    """No alert with this id."""

    code = "alert_not_found"
    status = 404


class SymbolNotMonitored(MarketPulseError):
    """This symbol is not monitored."""

    code = "symbol_not_monitored"
    status = 404


class ChannelNotFound(MarketPulseError):
    """No delivery channel with this name."""

    code = "channel_not_found"
    status = 404


class ChannelExists(MarketPulseError):
    """A delivery channel with this name exists already (PUT changes it)."""

    code = "channel_exists"
    status = 409


class LimitReached(MarketPulseError):
    """A configured cap (alerts, monitored symbols) is reached; remove one first."""

    code = "limit_reached"
    status = 409

    def __init__(self, message: str, code: str = "limit_reached") -> None:
        super().__init__(message)
        self.code = code


class ValidationFailed(MarketPulseError):
    """Invalid input."""

    code = "invalid_input"
    status = 422

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code


class MarketDataError(MarketPulseError):
    code = "market_data_error"
    status = 502


class QuoteUnavailable(MarketDataError):
    """No quote is available for this symbol."""

    code = "quote_unavailable"
    status = 503


class TransientSourceError(MarketDataError):
    """A provider failed in a way worth retrying."""

    code = "provider_unavailable"
    status = 503

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSourceError(MarketDataError):
    """A provider refused the request for good (unknown symbol, bad payload)."""

    code = "provider_error"
    status = 404


class InvalidQuote(MarketDataError):
    """A quote failed validation."""

    code = "invalid_quote"
    status = 502


class FxUnavailable(MarketDataError):
    """No exchange rate is available for a currency the portfolio holds."""

    code = "fx_unavailable"
    status = 503


class CircuitOpen(MarketDataError):
    """The provider's circuit breaker is open."""

    code = "circuit_open"
    status = 503


class InsufficientHistory(MarketPulseError):
    """Not enough price history to compute this metric."""

    code = "insufficient_history"
    status = 422


class NotReplayable(MarketPulseError):
    """A well-formed backtest the data held now cannot answer: the range holds none of a
    symbol's daily history (``history_not_covered``, the message names the dates it has; also
    an empty range), or the named alert does not exist (``alert_not_found``). 409, a conflict
    with what the server holds: the request is valid (so not 422) and the path exists (so not
    404, which would say ``/api/alerts/backtest`` is missing)."""

    code = "history_not_covered"
    status = 409

    def __init__(self, message: str = "", code: str = "history_not_covered") -> None:
        super().__init__(message)
        self.code = code


class RedisUnavailable(MarketPulseError):
    """Redis did not answer; the outcome of the last write is unknown."""

    code = "redis_unavailable"
    status = 503

    def __init__(self, message: str = "", *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url  # which Redis (no credentials), when the raiser knows it
