"""Named delivery channels (issue 20): what a channel is, its quiet hours, what it is sent, and
how its secrets are masked (pure: times are arguments).

A channel is a row ``{"name", "kind", "target", "quiet_hours"?, "digest", "back_to_normal"}``:

- ``kind`` ``email``: ``target`` is a list of e-mail addresses (sent over the SMTP server of the
  settings); ``apprise``: any Apprise URL (``tgram://…``, ``ntfy://…``, ``json://…``);
  ``webhook``: an http(s) URL, POSTed JSON with ``Idempotency-Key``.
- ``quiet_hours`` ``{"start": "22:00", "end": "07:00", "tz": "Asia/Kolkata"}``: from ``start``
  (inclusive) to ``end`` (exclusive), local time of ``tz``; across midnight when ``end`` is
  earlier. Fires meanwhile are held, not dropped, and sent when the quiet hours end: one message
  each, or one digest ("fired 5 times since 22:15") when ``digest`` is on.
- ``back_to_normal``: when an alert's condition clears (it re-arms), a message says so.

Every message carries its idempotency key in its body (``key: <fire id>``; a digest's key is
derived from the fires it holds), because a channel may deliver one again (a timeout after the
far end took it, a reclaimed outbox entry).

Masking: a target is shown with its secrets replaced by ``***``: a URL keeps its scheme, a user
name that has a password, and a host that is a plain host name or address; its password, every
path segment, every query value and the fragment are masked, and a "host" that is not a host
(``tgram://<bot token>/…``, ``discord://<id>/<token>``) is masked whole. ``secrets_of`` lists
the masked pieces, for the log's redaction (``observability/redaction.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import BUILTIN_CHANNELS, CHANNEL_NAME_PATTERN, CHANNEL_NAME_RE

MASK = "***"
MAX_ADDRESSES = 20
MAX_URL = 2048
SECRET_MIN = 6  # shorter masked pieces are not registered for log redaction (too common)
HELD_CAP = 500  # fires one channel keeps while quiet (the count goes on past it)
DIGEST_LINES = 50  # fires a digest lists one by one (the count says how many in all)
ChannelKind = Literal["email", "apprise", "webhook"]

HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# the same rules as JSON Schema patterns (what the API's schema says) and as ``re`` here:
# printable ASCII only, so both regex dialects read them alike
ADDRESS_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}[.][A-Za-z]{2,63}$"
URL_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]{0,31}://[!-~]+$"
HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$"
_HHMM_RE = re.compile(HHMM_PATTERN)
_ADDRESS_RE = re.compile(ADDRESS_PATTERN)
_URL_RE = re.compile(URL_PATTERN)
_HTTP_URL_RE = re.compile(HTTP_URL_PATTERN)
TIME_ZONES = tuple(sorted(available_timezones()))
_ZONES = frozenset(TIME_ZONES)
# the zones as one alternation: the schema says exactly which names are accepted, and a
# generator (schemathesis) draws names from it instead of walking an enum of ~600 values.
# Zone names hold letters, digits, '/', '_', '-' and '+' (written [+]: the same in every dialect)
TZ_PATTERN = "^(" + "|".join(z.replace("+", "[+]") for z in TIME_ZONES) + ")$"
_PLAIN_HOST_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


class QuietHours(BaseModel):
    """Local times of a time zone between which the channel holds its fires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: str = Field(
        description="HH:MM, 24-hour, inclusive",
        json_schema_extra={"pattern": HHMM_PATTERN},
        examples=["22:00"],
    )
    end: str = Field(
        description="HH:MM, 24-hour, exclusive; earlier than start: the next day; equal to"
        " start: always quiet (a muted channel)",
        json_schema_extra={"pattern": HHMM_PATTERN},
        examples=["07:00"],
    )
    tz: str = Field(
        description="an IANA time zone",
        json_schema_extra={"pattern": TZ_PATTERN},
        examples=["Asia/Kolkata"],
    )

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM_RE.fullmatch(v):
            raise ValueError(f"a time of day is HH:MM (00:00-23:59), got {v!r}")
        return v

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        if v not in _ZONES:
            raise ValueError(f"unknown time zone {v!r} (an IANA name, e.g. Asia/Kolkata)")
        return v

    def _bounds(self) -> tuple[time, time, ZoneInfo]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end), ZoneInfo(self.tz)

    def quiet_at(self, now: datetime) -> bool:
        """Whether ``now`` (aware) falls in the quiet hours (equal ends: always, a muted
        channel)."""
        start, end, tz = self._bounds()
        local = now.astimezone(tz).time()
        if start == end:
            return True
        if start < end:
            return start <= local < end
        return local >= start or local < end

    def ends_after(self, now: datetime) -> datetime:
        """The next end of the quiet hours after ``now`` (aware, in the zone)."""
        _, end, tz = self._bounds()
        local = now.astimezone(tz)
        candidate = datetime.combine(local.date(), end, tzinfo=tz)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
        return candidate


class Channel(BaseModel):
    """One named delivery channel (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        description="1-32 of a-z, 0-9, '_', '-' (not console, websocket or webhook)",
        json_schema_extra={"pattern": CHANNEL_NAME_PATTERN},
        examples=["ops-mail"],
    )
    kind: ChannelKind = Field(description="email, apprise or webhook")
    target: str | list[str] = Field(
        description=(
            "email: a list of addresses; apprise: an Apprise URL; webhook: an http(s) URL."
            " Answers show it with its secrets masked (***)"
        ),
        examples=[["ops@example.com"]],
    )
    quiet_hours: QuietHours | None = Field(
        default=None, description="fires are held meanwhile and sent when they end"
    )
    digest: bool = Field(
        default=False, description="held fires are sent as one digest, not one message each"
    )
    back_to_normal: bool = Field(
        default=False, description="a message when an alert's condition clears"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not CHANNEL_NAME_RE.fullmatch(v):
            raise ValueError(
                "a channel name is 1-32 of a-z, 0-9, '_', '-', starting with a letter or digit"
            )
        if v in BUILTIN_CHANNELS:
            raise ValueError(f"{v!r} is a built-in channel's name; choose another")
        return v

    @model_validator(mode="after")
    def _target(self) -> Channel:
        target = self.target
        if self.kind == "email":
            if not isinstance(target, list) or not 1 <= len(target) <= MAX_ADDRESSES:
                raise ValueError(f"an email target is a list of 1-{MAX_ADDRESSES} addresses")
            for address in target:
                if not _ADDRESS_RE.fullmatch(address):
                    raise ValueError(f"{address!r} is not an e-mail address")
            return self
        if not isinstance(target, str) or not 0 < len(target) <= MAX_URL:
            raise ValueError(f"an {self.kind} target is one URL of at most {MAX_URL} characters")
        if not _URL_RE.fullmatch(target):
            raise ValueError(
                f"an {self.kind} target is a URL (scheme://…) of printable ASCII without spaces"
            )
        if self.kind == "webhook" and not _HTTP_URL_RE.fullmatch(target):
            raise ValueError("a webhook target is an http:// or https:// URL")
        return self

    def masked(self) -> dict[str, object]:
        """The row as answers show it: the target's secrets masked."""
        row = self.model_dump(mode="json")
        row["target"] = (
            list(self.target) if isinstance(self.target, list) else mask_url(self.target)
        )
        return row

    def secrets(self) -> list[str]:
        """What the log must never show of this channel (``secrets_of`` of its URL)."""
        return [] if isinstance(self.target, list) else secrets_of(self.target)


def _split_url(url: str) -> tuple[str, str, str, str, str, str, str]:
    """scheme, user, password, host, path, query, fragment (no validation of the host); a URL
    ``urlsplit`` refuses (a stray ``[``) is all host, so all masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        scheme, _, rest = url.partition("://")
        return scheme, "", "", rest, "", "", ""
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if not at:
        user = password = ""
    return parts.scheme, user, password, hostport, parts.path, parts.query, parts.fragment


def _plain_host(hostport: str) -> bool:
    if not _PLAIN_HOST_RE.fullmatch(hostport):
        return False
    if hostport.count(":") > 1 and not hostport.startswith("["):
        return False
    host = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
    return "." in host or host.startswith("[") or host == "localhost"


def mask_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***`` (see the module docstring)."""
    scheme, user, password, hostport, path, query, fragment = _split_url(url)
    out = f"{scheme}://"
    if user or password:
        out += f"{user}:{MASK}@" if password else f"{MASK}@"
    out += hostport if _plain_host(hostport) else (MASK if hostport else "")
    out += "/".join(MASK if seg else "" for seg in path.split("/"))
    if query:
        pairs = (p.partition("=") for p in query.split("&"))
        out += "?" + "&".join(f"{k}={MASK}" if eq else MASK for k, eq, _ in pairs)
    if fragment:
        out += f"#{MASK}"
    return out


def secrets_of(url: str) -> list[str]:
    """The masked pieces of ``url`` worth redacting from a log line: the password, a user
    name shown as ``***``, a host that is not one, each path segment, query value and the
    fragment, of at least ``SECRET_MIN`` characters (a password of any length)."""
    _, user, password, hostport, path, query, fragment = _split_url(url)
    pieces = [password] if password else []
    if user and not password:
        pieces.append(user)
    if hostport and not _plain_host(hostport):
        pieces += [hostport, *hostport.split(":")]
    pieces += path.split("/")
    pieces += [v for _, _, v in (p.partition("=") for p in query.split("&"))]
    pieces.append(fragment)
    # a plain word ("hooks", "marketpulse") is a path, not a token: masking it in every log line
    # would hide ordinary text; a token has a digit or a symbol (the API masks them all anyway)
    long = {p for p in pieces if len(p) >= SECRET_MIN and not p.isalpha()}
    if password and len(password) >= 3:
        long.add(password)
    return sorted(long, key=len, reverse=True)


def mask_text(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


# -- what a channel is sent ------------------------------------------------------------------


class Message(BaseModel):
    """One message on a channel: a title, a text body that ends with its idempotency key, the
    key itself, and what it is about (``kind``; the fires, for a webhook's JSON)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["fired", "cleared", "digest", "test"]
    title: str
    body: str
    key: str
    fires: tuple[FiredAlert, ...] = ()


def fire_message(alert: FiredAlert) -> Message:
    """A fire, or (``kind`` "cleared") an alert back to normal."""
    what = f"{alert.symbol} {alert.alert_type.value} {alert.comparison} {alert.threshold:g}"
    if alert.kind == "cleared":
        return Message(
            kind="cleared",
            title=f"marketpulse: back to normal: {what}",
            body=(
                f"{what} is no longer true: value {alert.value:.4g} at "
                f"{alert.quote.timestamp.isoformat()} [alert {alert.alert_id}]\nkey: {alert.id}"
            ),
            key=alert.id,
            fires=(alert,),
        )
    return Message(
        kind="fired",
        title=f"marketpulse: {what}",
        body=f"{alert.describe()}\nkey: {alert.id}",
        key=alert.id,
        fires=(alert,),
    )


def digest_message(fires: Sequence[FiredAlert], count: int, since: datetime, tz: str) -> Message:
    """``count`` fires held since ``since``, as one message ("fired 5 times since 22:15"); its
    key is derived from the fire ids, so sending the same digest again repeats it."""
    local = since.astimezone(ZoneInfo(tz))
    head = f"fired {count} time{'s' if count != 1 else ''} since {local:%H:%M} ({tz})"
    lines = [f"- {f.describe()} [fire {f.id}]" for f in fires[:DIGEST_LINES]]
    if count > len(lines):
        lines.append(f"- … and {count - len(lines)} more")
    key = "digest-" + hashlib.sha256(",".join(f.id for f in fires).encode()).hexdigest()[:32]
    return Message(
        kind="digest",
        title=f"marketpulse: {head}",
        body="\n".join([head, *lines, f"key: {key}"]),
        key=key,
        fires=tuple(fires),
    )


def probe_message(name: str, key: str) -> Message:
    return Message(
        kind="test",
        title="marketpulse: a test message",
        body=f"A test message of the channel {name!r} (sent from the dashboard or the API).\n"
        f"key: {key}",
        key=key,
    )


def routed(alert: FiredAlert, channel: str, *, named: bool, back_to_normal: bool = False) -> bool:
    """Whether ``channel`` is sent this outbox entry. An alert that names its channels goes to
    those; one that names none goes to the manager's own channels (the built-in console,
    websocket and webhook, a library user's notifiers), as before channels existed, and to no
    named one. A back-to-normal entry goes only to a named channel that asked for them."""
    if alert.routes is None:
        return not named and alert.kind == "fired"
    if channel not in alert.routes:
        return False
    return alert.kind == "fired" or (named and back_to_normal)
