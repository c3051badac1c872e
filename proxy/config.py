"""Environment + command-line flags -> a frozen :class:`Settings`, with one clear error per bad value.

Every setting has one environment variable and (except the contract's deployment wiring) one flag;
``SETTINGS`` is the single table both are generated from. Flags win over the environment.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import os
import secrets
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from proxy.admin import parse_token
from proxy.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MIN_KEY_CHARS = 32


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _host_port(value: str) -> str:
    """A bare host[:port], the form WORKOS_CUSTOM_DOMAIN takes (no scheme, no path)."""
    value = value.strip().lower()
    if not value or "://" in value or "/" in value or "?" in value or "@" in value:
        raise ValueError("must be a host name such as auth.example.com (no scheme, no path)")
    parts = urlsplit("//" + value)
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    if not parts.hostname:
        raise ValueError("must be a host name such as auth.example.com")
    return value


def _origin(value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an origin such as https://my-tenant.us.auth0.com")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be an origin only (scheme://host[:port]), without path, query or user")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _optional_origin(value: str) -> str:
    """An origin, or empty: left out only with SSO_PROXY_AUTH0_OFF=true (checked in load_settings)."""
    return _origin(value) if value.strip() else ""


def _redirect_url(value: str) -> str:
    """An absolute http(s) URL to send browsers to, or empty; printable ASCII only (a header value)."""
    value = value.strip()
    if not value:
        return ""
    if any(not "!" <= c <= "~" or c == "\\" for c in value):
        raise ValueError("must be an absolute URL of printable ASCII without spaces or backslashes")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError("must be an absolute http(s) URL such as https://www.example.com/signin-moved")
    return value


# Each parser raises ValueError with what the value must be, never Python's own message
# ("invalid literal for int() with base 10"): the error line is read by whoever set the value.


def _whole(value: str) -> int | None:
    try:
        return int(value.strip(), 10)
    except ValueError:
        return None


def _port(value: str) -> int:
    port = _whole(value)
    if port is None or not 0 <= port <= 65535:
        raise ValueError("must be a whole number from 0 to 65535 (0: any free port)")
    return port


def _positive_int(value: str) -> int:
    number = _whole(value)
    if number is None or number <= 0:
        raise ValueError("must be a whole number of 1 or more")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a number of seconds, 0 or more (e.g. 5 or 0.5)")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _networks(value: str) -> tuple[Network, ...]:
    out = []
    for item in value.split(","):
        if item.strip():
            try:
                out.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"must be comma-separated IP networks such as 10.0.0.0/8,fd00::/8 ({item.strip()!r} is not one)"
                ) from None
    return tuple(out)


def _hosts(value: str) -> tuple[str, ...]:
    return tuple(_host_port(item) for item in value.split(",") if item.strip())


def _keys(value: str) -> tuple[bytes, ...]:
    """Comma-separated secrets of at least 32 characters each; never echoed in an error."""
    keys = tuple(item.strip() for item in value.split(",") if item.strip())
    for index, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(
                f"key {index} of {len(keys)} has {len(key)} characters; each must have at least {MIN_KEY_CHARS} "
                "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    return tuple(key.encode() for key in keys)


def _file(value: str) -> str:
    value = value.strip()
    if not value:
        return ""  # unset
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ValueError("is not a readable file")
    return value


# Auth0, "Configure Custom Domains with Self-Managed Certificates", section "Original client ip
# address": the proxy sets X-Forwarded-For to the end user's IP ("Just one ip address is expected");
# where that is not possible, the custom domain's ``custom_client_ip_header`` names another header.
# The Management API's values for it (CustomDomainCustomClientIpHeaderEnum in Auth0's SDKs):
# true-client-ip, cf-connecting-ip, x-forwarded-for, x-azure-clientip (or empty: X-Forwarded-For).
CLIENT_IP_HEADERS = ("true-client-ip", "cf-connecting-ip", "x-azure-clientip")


def _client_ip_header(value: str) -> str:
    """One more header for the end user's IP besides X-Forwarded-For, or "" for X-Forwarded-For only."""
    value = value.strip().lower()
    if value in ("", "x-forwarded-for"):
        return ""
    if value not in CLIENT_IP_HEADERS:
        raise ValueError(
            f"must be one of {', '.join(CLIENT_IP_HEADERS)} (the other values of Auth0's custom_client_ip_header), "
            "or x-forwarded-for / unset: X-Forwarded-For, which is always sent"
        )
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table."""

    field: str
    env: str
    flag: str | None
    parse: Callable[[str], Any]
    default: str | None  # None: required
    help: str
    secret: bool = False  # its value is never echoed in an error
    switch: bool = False  # a boolean whose flag may be given bare (`--auth0-off` means true)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "workos_domain",
        "WORKOS_CUSTOM_DOMAIN",
        None,
        _host_port,
        None,
        "host of the WorkOS custom domain, e.g. auth.example.com",
    ),
    Setting("workos_client_id", "WORKOS_CLIENT_ID", None, _text, None, "WorkOS client ID"),
    Setting(
        "auth0_origin",
        "AUTH0_FALLBACK_ORIGIN",
        None,
        _optional_origin,
        "",
        "origin that receives forwarded traffic, e.g. https://my-tenant.us.auth0.com; "
        "required unless SSO_PROXY_AUTH0_OFF=true",
    ),
    Setting(
        "auth0_switched_off",
        "SSO_PROXY_AUTH0_OFF",
        "--auth0-off",
        _bool,
        "false",
        "true: Auth0 is switched off on purpose (no AUTH0_FALLBACK_ORIGIN; every callback to WorkOS, other paths 404)",
        switch=True,
    ),
    Setting(
        "cname_api_key",
        "AUTH0_CNAME_API_KEY",
        None,
        str.strip,
        "",
        "sent as cname-api-key to Auth0 (custom domains with self-managed certificates)",
    ),
    Setting(
        "client_ip_header",
        "AUTH0_CLIENT_IP_HEADER",
        None,
        _client_ip_header,
        "",
        "X-Forwarded-For always carries the end user's one IP to Auth0; this names one more header to carry "
        f"it ({', '.join(CLIENT_IP_HEADERS)}), as the custom domain's custom_client_ip_header reads",
    ),
    Setting("routes", "SSO_PROXY_ROUTES", "--routes", _text, "routes.yaml", "route map file"),
    Setting("host", "SSO_PROXY_HOST", "--host", _text, "127.0.0.1", "public listener address"),
    Setting("port", "SSO_PROXY_PORT", "--port", _port, "8080", "public listener port"),
    Setting("admin_host", "SSO_PROXY_ADMIN_HOST", "--admin-host", _text, "127.0.0.1", "operations listener address"),
    Setting("admin_port", "SSO_PROXY_ADMIN_PORT", "--admin-port", _port, "9090", "operations listener port"),
    Setting(
        "admin_token",
        "SSO_PROXY_ADMIN_TOKEN",
        None,  # a secret: environment (a Kubernetes Secret) only, never a flag visible in `ps`
        parse_token,
        "",
        "bearer token POST /-/reload requires (>= 32 characters); unset: the endpoint is off",
        secret=True,
    ),
    Setting(
        "admin_hosts",
        "SSO_PROXY_ADMIN_HOSTS",
        "--admin-hosts",
        _hosts,
        "",
        "host names the operations listener answers besides IP addresses and localhost, comma-separated",
    ),
    Setting(
        "public_hosts",
        "SSO_PROXY_PUBLIC_HOST",
        "--public-host",
        _hosts,
        "",
        "this service's own public host(s), comma-separated; refused as AUTH0_FALLBACK_ORIGIN",
    ),
    Setting(
        "workos_scheme",
        "SSO_PROXY_WORKOS_SCHEME",
        "--workos-scheme",
        _choice("https", "http"),
        "https",
        "scheme of WorkOS redirects (http only for local stand-ins)",
    ),
    Setting(
        "redirect_mode",
        "SSO_PROXY_REDIRECT_MODE",
        "--redirect-mode",
        _choice("307", "form"),
        "307",
        "how callbacks are sent to WorkOS: 307 redirect, or an auto-submitting form",
    ),
    Setting(
        "passthrough",
        "SSO_PROXY_PASSTHROUGH",
        "--passthrough",
        _bool,
        "true",
        "reverse-proxy non-callback paths to Auth0 (false: 404)",
    ),
    Setting(
        "max_body_bytes",
        "SSO_PROXY_MAX_BODY_BYTES",
        "--max-body-bytes",
        _positive_int,
        "1048576",
        "largest request body accepted (413 above)",
    ),
    Setting(
        "connect_timeout",
        "SSO_PROXY_CONNECT_TIMEOUT",
        "--connect-timeout",
        _seconds,
        "5",
        "seconds to connect to Auth0",
    ),
    Setting(
        "read_timeout",
        "SSO_PROXY_READ_TIMEOUT",
        "--read-timeout",
        _seconds,
        "15",
        "seconds between bytes from Auth0 (below the shutdown timeout, so a drain sees Auth0's answer)",
    ),
    Setting(
        "pool_timeout",
        "SSO_PROXY_POOL_TIMEOUT",
        "--pool-timeout",
        _seconds,
        "5",
        "seconds a request may wait for a free connection to Auth0 (504 after)",
    ),
    Setting(
        "upstream_connections",
        "SSO_PROXY_UPSTREAM_CONNECTIONS",
        "--upstream-connections",
        _positive_int,
        "256",
        "connections to Auth0 per pool (callbacks and passthrough each have one)",
    ),
    Setting(
        "max_head_bytes",
        "SSO_PROXY_MAX_HEAD_BYTES",
        "--max-head-bytes",
        _positive_int,
        "32768",
        "largest request line + headers accepted (431 above); nginx's large_client_header_buffers 4 x 8k",
    ),
    Setting(
        "head_timeout",
        "SSO_PROXY_HEAD_TIMEOUT",
        "--head-timeout",
        _seconds,
        "10",
        "seconds a client may take to send a request head, from connecting or its first byte (408 after)",
    ),
    Setting(
        "body_timeout",
        "SSO_PROXY_BODY_TIMEOUT",
        "--body-timeout",
        _seconds,
        "10",
        "seconds a request body may go without progress (408 after; nothing is forwarded)",
    ),
    Setting(
        "body_deadline",
        "SSO_PROXY_BODY_DEADLINE",
        "--body-deadline",
        _seconds,
        "30",
        "seconds the whole request body may take from the end of its head, however it trickles (408 after)",
    ),
    Setting(
        "keepalive_timeout",
        "SSO_PROXY_KEEPALIVE_TIMEOUT",
        "--keepalive-timeout",
        _seconds,
        "5",
        "seconds an idle keep-alive connection is kept open",
    ),
    Setting(
        "max_connections",
        "SSO_PROXY_MAX_CONNECTIONS",
        "--max-connections",
        _positive_int,
        "1000",
        "client connections on the public listener; beyond it new ones get a 503 and are closed",
    ),
    Setting(
        "body_budget_bytes",
        "SSO_PROXY_BODY_BUDGET_BYTES",
        "--body-budget-bytes",
        _positive_int,
        "33554432",
        "request body bytes buffered across all requests at once (503 with Retry-After above)",
    ),
    Setting(
        "trusted_proxies",
        "SSO_PROXY_TRUSTED_PROXIES",
        "--trusted-proxies",
        _networks,
        "",
        "comma-separated CIDRs whose X-Forwarded-For / X-Forwarded-Proto are trusted",
    ),
    Setting(
        "reload_interval",
        "SSO_PROXY_RELOAD_INTERVAL",
        "--reload-interval",
        _seconds,
        "2",
        "seconds between route file checks (0: off)",
    ),
    Setting(
        "reload_settle",
        "SSO_PROXY_RELOAD_SETTLE",
        "--reload-settle",
        _seconds,
        "0.5",
        "SIGHUP, POST /-/reload and the start apply the route file only after two reads this far apart agree",
    ),
    Setting(
        "drain_seconds",
        "SSO_PROXY_DRAIN_SECONDS",
        "--drain-seconds",
        _seconds,
        "5",
        "after SIGTERM, seconds of serving while not ready",
    ),
    Setting(
        "shutdown_timeout",
        "SSO_PROXY_SHUTDOWN_TIMEOUT",
        "--shutdown-timeout",
        _seconds,
        "20",
        "after the drain, seconds to let in-flight requests finish",
    ),
    Setting(
        "transaction_keys",
        "SSO_PROXY_TRANSACTION_KEYS",
        None,  # no flag: a secret does not belong in a process listing
        _keys,
        "",
        "comma-separated secrets (>= 32 characters each) binding Auth0-started logins; the first signs, all "
        "verify; unset: a random key per process",
        secret=True,
    ),
    Setting(
        "transaction_binding",
        "SSO_PROXY_TRANSACTION_BINDING",
        "--transaction-binding",
        _bool,
        "true",
        "route a callback to whoever started its login (Auth0-started logins back to Auth0)",
    ),
    Setting(
        "transaction_ttl",
        "SSO_PROXY_TRANSACTION_TTL",
        "--transaction-ttl",
        _positive_int,
        "600",
        "seconds a login's binding lives",
    ),
    Setting(
        "tls_cert", "SSO_PROXY_TLS_CERT", "--tls-cert", _file, "", "PEM certificate: serve the public listener over TLS"
    ),
    Setting("tls_key", "SSO_PROXY_TLS_KEY", "--tls-key", _file, "", "PEM private key of --tls-cert"),
    Setting(
        "log_level",
        "SSO_PROXY_LOG_LEVEL",
        "--log-level",
        _choice("debug", "info", "warning", "error"),
        "info",
        "log level",
    ),
    Setting(
        "retired_url",
        "SSO_PROXY_RETIRED_URL",
        "--retired-url",
        _redirect_url,
        "",
        "with Auth0 switched off: send non-callback requests here (302) instead of a 404 page",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads at start, validated."""

    workos_domain: str
    workos_client_id: str
    auth0_origin: str
    auth0_switched_off: bool = False
    cname_api_key: str = ""
    client_ip_header: str = ""  # "" : X-Forwarded-For only (always sent); else one of CLIENT_IP_HEADERS too
    routes: str = "routes.yaml"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 9090
    admin_token: str = field(default="", repr=False)
    admin_hosts: tuple[str, ...] = ()
    public_hosts: tuple[str, ...] = ()
    workos_scheme: str = "https"
    redirect_mode: str = "307"
    passthrough: bool = True
    max_body_bytes: int = 1048576
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    pool_timeout: float = 5.0
    upstream_connections: int = 256
    max_head_bytes: int = 32768
    head_timeout: float = 10.0
    body_timeout: float = 10.0
    body_deadline: float = 30.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1000
    body_budget_bytes: int = 33554432
    trusted_proxies: tuple[Network, ...] = ()
    reload_interval: float = 2.0
    reload_settle: float = 0.5
    drain_seconds: float = 5.0
    shutdown_timeout: float = 20.0
    log_level: str = "info"
    transaction_keys: tuple[bytes, ...] = field(default=(), repr=False, compare=False)  # random when unset
    transaction_binding: bool = True
    transaction_ttl: int = 600
    tls_cert: str = ""
    tls_key: str = ""
    retired_url: str = ""

    @property
    def auth0_off(self) -> bool:
        """SSO_PROXY_AUTH0_OFF=true (and so no AUTH0_FALLBACK_ORIGIN): nothing is ever forwarded."""
        return self.auth0_switched_off

    @property
    def auth0_host(self) -> str:
        """The Host header Auth0 expects: the origin's host[:port]."""
        return urlsplit(self.auth0_origin).netloc


assert {s.field for s in SETTINGS} == {f.name for f in fields(Settings)}


def add_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """Add one flag per setting that has one (all default to None: not given)."""
    for setting in SETTINGS:
        if setting.flag is None or (only is not None and setting.field not in only):
            continue
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if setting.switch else {}
        parser.add_argument(
            setting.flag,
            dest=setting.field,
            default=None,
            metavar=setting.env,
            **extra,
            help=f"{setting.help} (env {setting.env}, default {setting.default or 'unset'})",
        )


def _check_loops(settings: Settings) -> None:
    if settings.auth0_off:
        return
    origin_netloc = urlsplit(settings.auth0_origin).netloc
    origin_host = urlsplit(settings.auth0_origin).hostname or ""
    if origin_netloc == settings.workos_domain or origin_host == settings.workos_domain:
        raise ConfigError("AUTH0_FALLBACK_ORIGIN: points at WORKOS_CUSTOM_DOMAIN; forwarded callbacks would loop")
    for own in settings.public_hosts:
        if origin_netloc == own or origin_host == own:
            raise ConfigError(
                f"AUTH0_FALLBACK_ORIGIN: points at this service's own public host {own} "
                "(SSO_PROXY_PUBLIC_HOST); requests would loop"
            )


def _check_auth0_off(values: Mapping[str, Any], off_name: str) -> None:
    """Auth0 is switched off only on purpose: a dropped or misspelled AUTH0_FALLBACK_ORIGIN stops the start
    (before, its absence alone switched Auth0 off, and every /authorize got a 404)."""
    if values["auth0_switched_off"] and values["auth0_origin"]:
        raise ConfigError(
            f"{off_name}, AUTH0_FALLBACK_ORIGIN: Auth0 switched off and a fallback origin given; remove one"
        )
    if not values["auth0_switched_off"] and not values["auth0_origin"]:
        raise ConfigError(
            "AUTH0_FALLBACK_ORIGIN: required setting is missing; to switch Auth0 off, set SSO_PROXY_AUTH0_OFF=true "
            "(or --auth0-off)"
        )


# Names read from the environment besides the settings table: by the WorkOS API commands and by the
# official WorkOS SDK, whose names the service shares.
OTHER_ENV = ("WORKOS_API_KEY", "WORKOS_BASE_URL")


def unknown_env_warnings(env: Mapping[str, str]) -> list[str]:
    """One line per ``SSO_PROXY_*`` variable that is no setting, with the nearest known name.

    A misspelled setting (``SSO_PROXY_PROT``) would otherwise be ignored without a word, and its
    default used. Values are never shown (the variable may hold a secret).
    """
    known = [s.env for s in SETTINGS] + list(OTHER_ENV)
    lines = []
    for name in sorted(env):
        if not name.startswith("SSO_PROXY_") or name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        lines.append(f"{name}: not a setting of sso-proxy, ignored{hint}")
    return lines


def load_settings(env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from the environment and parsed flags; ConfigError names the first bad one."""
    flags = flags or {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.field)
        name = setting.flag if raw is not None and setting.flag else setting.env
        if raw is None:
            raw = env.get(setting.env)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):  # empty means unset (ConfigMaps)
            if setting.default is None:
                raise ConfigError(f"{setting.env}: required setting is missing ({setting.help})")
            raw = setting.default
        try:
            values[setting.field] = setting.parse(str(raw))
        except ValueError as exc:
            shown = "(value not shown: a secret)" if setting.secret else f"(got {str(raw)!r})"
            raise ConfigError(f"{name}: {exc} {shown}") from exc
    if not values["transaction_keys"]:
        values["transaction_keys"] = (secrets.token_bytes(32),)  # one replica's own; see docs/routing.md
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("SSO_PROXY_TLS_CERT, SSO_PROXY_TLS_KEY: give both or neither")
    _check_auth0_off(values, "--auth0-off" if flags.get("auth0_switched_off") is not None else "SSO_PROXY_AUTH0_OFF")
    settings = Settings(**values)
    _check_loops(settings)
    return settings
