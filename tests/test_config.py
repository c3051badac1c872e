"""Settings from the environment and flags: every setting's parsing, precedence and errors."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

import pytest

from proxy.config import SETTINGS, Settings, add_flags, load_settings, unknown_env_warnings
from proxy.errors import ConfigError

BASE = {
    "WORKOS_CUSTOM_DOMAIN": "auth.example.com",
    "WORKOS_CLIENT_ID": "client_01",
    "AUTH0_FALLBACK_ORIGIN": "https://my-tenant.us.auth0.com",
}


def load(flags: dict[str, Any] | None = None, **env: str) -> Settings:
    return load_settings({**BASE, **env}, flags)


def test_defaults() -> None:
    s = load()
    assert s == Settings(
        workos_domain="auth.example.com",
        workos_client_id="client_01",
        auth0_origin="https://my-tenant.us.auth0.com",
    )
    assert s.cname_api_key == ""
    assert s.client_ip_header == ""  # X-Forwarded-For only (always sent)
    assert (s.host, s.port, s.admin_host, s.admin_port) == ("127.0.0.1", 8080, "127.0.0.1", 9090)
    assert (s.routes, s.workos_scheme, s.redirect_mode, s.passthrough) == ("routes.yaml", "https", "307", True)
    assert (s.max_body_bytes, s.connect_timeout, s.read_timeout) == (1048576, 5.0, 15.0)
    assert (s.trusted_proxies, s.public_hosts) == ((), ())
    assert (s.reload_interval, s.drain_seconds, s.shutdown_timeout, s.log_level) == (2.0, 5.0, 20.0, "info")
    assert s.auth0_host == "my-tenant.us.auth0.com"


@pytest.mark.parametrize(
    ("env", "value", "field", "expected"),
    [
        ("WORKOS_CUSTOM_DOMAIN", "Auth.Example.COM", "workos_domain", "auth.example.com"),
        ("WORKOS_CUSTOM_DOMAIN", " auth.example.com:8443 ", "workos_domain", "auth.example.com:8443"),
        ("WORKOS_CLIENT_ID", " client_X ", "workos_client_id", "client_X"),
        ("AUTH0_FALLBACK_ORIGIN", "https://T.Auth0.com/", "auth0_origin", "https://t.auth0.com"),
        ("AUTH0_FALLBACK_ORIGIN", "http://127.0.0.1:8081", "auth0_origin", "http://127.0.0.1:8081"),
        ("AUTH0_CNAME_API_KEY", " key-123 ", "cname_api_key", "key-123"),
        ("AUTH0_CNAME_API_KEY", "", "cname_api_key", ""),
        ("AUTH0_CLIENT_IP_HEADER", "CF-Connecting-IP", "client_ip_header", "cf-connecting-ip"),
        ("AUTH0_CLIENT_IP_HEADER", " true-client-ip ", "client_ip_header", "true-client-ip"),
        ("AUTH0_CLIENT_IP_HEADER", "X-Azure-ClientIP", "client_ip_header", "x-azure-clientip"),
        ("AUTH0_CLIENT_IP_HEADER", "X-Forwarded-For", "client_ip_header", ""),  # always sent: nothing more
        ("SSO_PROXY_ROUTES", "/etc/sso-proxy/routes.yaml", "routes", "/etc/sso-proxy/routes.yaml"),
        ("SSO_PROXY_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("SSO_PROXY_PORT", "8443", "port", 8443),
        ("SSO_PROXY_PORT", "0", "port", 0),
        ("SSO_PROXY_ADMIN_HOST", "0.0.0.0", "admin_host", "0.0.0.0"),
        ("SSO_PROXY_ADMIN_PORT", "9191", "admin_port", 9191),
        ("SSO_PROXY_PUBLIC_HOST", "login.example.com", "public_hosts", ("login.example.com",)),
        ("SSO_PROXY_PUBLIC_HOST", "a.example.com, B.example.com,", "public_hosts", ("a.example.com", "b.example.com")),
        ("SSO_PROXY_WORKOS_SCHEME", "HTTP", "workos_scheme", "http"),
        ("SSO_PROXY_REDIRECT_MODE", "form", "redirect_mode", "form"),
        ("SSO_PROXY_REDIRECT_MODE", "307", "redirect_mode", "307"),
        ("SSO_PROXY_PASSTHROUGH", "false", "passthrough", False),
        ("SSO_PROXY_PASSTHROUGH", "0", "passthrough", False),
        ("SSO_PROXY_PASSTHROUGH", "Off", "passthrough", False),
        ("SSO_PROXY_PASSTHROUGH", "no", "passthrough", False),
        ("SSO_PROXY_PASSTHROUGH", "YES", "passthrough", True),
        ("SSO_PROXY_PASSTHROUGH", "on", "passthrough", True),
        ("SSO_PROXY_PASSTHROUGH", "1", "passthrough", True),
        ("SSO_PROXY_MAX_BODY_BYTES", "2048", "max_body_bytes", 2048),
        ("SSO_PROXY_CONNECT_TIMEOUT", "0.5", "connect_timeout", 0.5),
        ("SSO_PROXY_READ_TIMEOUT", "0", "read_timeout", 0.0),
        ("SSO_PROXY_READ_TIMEOUT", "2.5", "read_timeout", 2.5),
        (
            "SSO_PROXY_TRUSTED_PROXIES",
            "10.0.0.0/8, 127.0.0.1/32,::1",
            "trusted_proxies",
            (
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("127.0.0.1/32"),
                ipaddress.ip_network("::1/128"),
            ),
        ),
        ("SSO_PROXY_TRUSTED_PROXIES", "10.1.2.3/8", "trusted_proxies", (ipaddress.ip_network("10.0.0.0/8"),)),
        ("SSO_PROXY_TRUSTED_PROXIES", "", "trusted_proxies", ()),
        ("SSO_PROXY_RELOAD_INTERVAL", "0", "reload_interval", 0.0),
        ("SSO_PROXY_DRAIN_SECONDS", "1.5", "drain_seconds", 1.5),
        ("SSO_PROXY_SHUTDOWN_TIMEOUT", "3", "shutdown_timeout", 3.0),
        ("SSO_PROXY_LOG_LEVEL", "DEBUG", "log_level", "debug"),
        ("SSO_PROXY_LOG_LEVEL", "warning", "log_level", "warning"),
    ],
)
def test_env_parsing(env: str, value: str, field: str, expected: object) -> None:
    assert getattr(load(**{env: value}), field) == expected


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("WORKOS_CUSTOM_DOMAIN", "https://auth.example.com"),
        ("WORKOS_CUSTOM_DOMAIN", "auth.example.com/path"),
        ("WORKOS_CUSTOM_DOMAIN", "auth.example.com?x=1"),
        ("WORKOS_CUSTOM_DOMAIN", "user@auth.example.com"),
        ("WORKOS_CUSTOM_DOMAIN", "auth.example.com:99999"),
        ("WORKOS_CUSTOM_DOMAIN", "auth.example.com:port"),
        ("WORKOS_CUSTOM_DOMAIN", ":443"),
        ("AUTH0_FALLBACK_ORIGIN", "my-tenant.us.auth0.com"),
        ("AUTH0_FALLBACK_ORIGIN", "ftp://my-tenant.us.auth0.com"),
        ("AUTH0_FALLBACK_ORIGIN", "https://my-tenant.us.auth0.com/login"),
        ("AUTH0_FALLBACK_ORIGIN", "https://my-tenant.us.auth0.com?x=1"),
        ("AUTH0_FALLBACK_ORIGIN", "https://my-tenant.us.auth0.com#frag"),
        ("AUTH0_FALLBACK_ORIGIN", "https://user:pw@my-tenant.us.auth0.com"),
        ("AUTH0_FALLBACK_ORIGIN", "https://my-tenant.us.auth0.com:70000"),
        ("AUTH0_FALLBACK_ORIGIN", "https://"),
        ("AUTH0_CLIENT_IP_HEADER", "true client ip"),
        ("AUTH0_CLIENT_IP_HEADER", "x-ip:"),
        # Only the values of Auth0's custom_client_ip_header: another name would be read by nobody.
        ("AUTH0_CLIENT_IP_HEADER", "x-real-ip"),
        ("AUTH0_CLIENT_IP_HEADER", "true_client_ip"),
        ("AUTH0_CLIENT_IP_HEADER", "x-forwarded-for,true-client-ip"),
        ("AUTH0_CLIENT_IP_HEADER", "forwarded"),
        ("SSO_PROXY_PORT", "http"),
        ("SSO_PROXY_PORT", "-1"),
        ("SSO_PROXY_PORT", "65536"),
        ("SSO_PROXY_ADMIN_PORT", "9090.5"),
        ("SSO_PROXY_PUBLIC_HOST", "https://login.example.com"),
        ("SSO_PROXY_WORKOS_SCHEME", "ftp"),
        ("SSO_PROXY_REDIRECT_MODE", "302"),
        ("SSO_PROXY_PASSTHROUGH", "maybe"),
        ("SSO_PROXY_MAX_BODY_BYTES", "0"),
        ("SSO_PROXY_MAX_BODY_BYTES", "-5"),
        ("SSO_PROXY_MAX_BODY_BYTES", "1MB"),
        ("SSO_PROXY_CONNECT_TIMEOUT", "-1"),
        ("SSO_PROXY_CONNECT_TIMEOUT", "five"),
        ("SSO_PROXY_READ_TIMEOUT", "nan"),
        ("SSO_PROXY_READ_TIMEOUT", "inf"),
        ("SSO_PROXY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("SSO_PROXY_TRUSTED_PROXIES", "proxy.example.com"),
        ("SSO_PROXY_RELOAD_INTERVAL", "-2"),
        ("SSO_PROXY_DRAIN_SECONDS", "x"),
        ("SSO_PROXY_SHUTDOWN_TIMEOUT", "-0.1"),
        ("SSO_PROXY_LOG_LEVEL", "verbose"),
    ],
)
def test_bad_values_name_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{env: value})
    message = str(info.value)
    assert message.startswith(f"{env}: ")
    assert "\n" not in message


# AUTH0_FALLBACK_ORIGIN is optional: without it Auth0 is switched off (tests/test_retired.py).
@pytest.mark.parametrize("missing", ["WORKOS_CUSTOM_DOMAIN", "WORKOS_CLIENT_ID"])
@pytest.mark.parametrize("how", ["absent", "empty", "blank"])
def test_missing_required_names_the_variable(missing: str, how: str) -> None:
    env = dict(BASE)
    if how == "absent":
        del env[missing]
    else:
        env[missing] = "" if how == "empty" else "   "
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(f"{missing}: ")
    assert "missing" in message
    assert "\n" not in message


def test_flags_win_over_environment() -> None:
    flags = {"port": "7000", "routes": "/tmp/r.yaml", "passthrough": "false", "redirect_mode": None}
    s = load(flags, SSO_PROXY_PORT="6000", SSO_PROXY_ROUTES="/etc/x.yaml", SSO_PROXY_REDIRECT_MODE="form")
    assert s.port == 7000
    assert s.routes == "/tmp/r.yaml"
    assert s.passthrough is False
    assert s.redirect_mode == "form"  # a flag left as None does not hide the environment


def test_bad_flag_is_named_by_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load({"admin_port": "nine"}, SSO_PROXY_ADMIN_PORT="9191")
    assert str(info.value).startswith("--admin-port: ")


def test_argparse_flags_round_trip() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    args = parser.parse_args(
        ["--port", "7001", "--max-body-bytes", "10", "--trusted-proxies", "127.0.0.1/32", "--redirect-mode", "form"]
    )
    s = load(vars(args))
    assert (s.port, s.max_body_bytes, s.redirect_mode) == (7001, 10, "form")
    assert s.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),)


def test_every_setting_has_env_and_flag_where_documented() -> None:
    wiring = {"WORKOS_CUSTOM_DOMAIN", "WORKOS_CLIENT_ID", "AUTH0_FALLBACK_ORIGIN", "AUTH0_CNAME_API_KEY"}
    wiring.add("AUTH0_CLIENT_IP_HEADER")
    secrets_only_in_env = {"SSO_PROXY_TRANSACTION_KEYS"}  # a flag would show the secret in a process listing
    for setting in SETTINGS:
        if setting.env in wiring or setting.env in secrets_only_in_env:
            assert setting.flag is None
        elif setting.secret:  # secrets only from the environment: a flag shows in `ps` and shell history
            assert setting.env.startswith("SSO_PROXY_")
            assert setting.flag is None
        else:
            assert setting.env.startswith("SSO_PROXY_")
            assert setting.flag == "--" + setting.env.removeprefix("SSO_PROXY_").lower().replace("_", "-")


@pytest.mark.parametrize(
    ("origin", "extra"),
    [
        ("https://auth.example.com", {}),
        ("https://AUTH.example.com/", {}),
        ("https://auth.example.com:443", {}),
        ("http://auth.example.com:8443", {"WORKOS_CUSTOM_DOMAIN": "auth.example.com:8443"}),
        ("https://login.example.com", {"SSO_PROXY_PUBLIC_HOST": "login.example.com"}),
        ("https://login.example.com:8443", {"SSO_PROXY_PUBLIC_HOST": "other.example.com,login.example.com"}),
    ],
)
def test_fallback_origin_that_would_loop_is_refused(origin: str, extra: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{"AUTH0_FALLBACK_ORIGIN": origin, **extra})
    assert str(info.value).startswith("AUTH0_FALLBACK_ORIGIN: ")


@pytest.mark.parametrize(
    ("origin", "extra"),
    [
        ("https://my-tenant.us.auth0.com", {"SSO_PROXY_PUBLIC_HOST": "login.example.com"}),
        # the stand-ins: same loopback host, different ports
        ("http://127.0.0.1:8081", {"WORKOS_CUSTOM_DOMAIN": "127.0.0.1:8082"}),
        ("https://auth.example.com.edge.net", {}),
    ],
)
def test_fallback_origin_elsewhere_is_accepted(origin: str, extra: dict[str, str]) -> None:
    assert load(**{"AUTH0_FALLBACK_ORIGIN": origin, **extra}).auth0_origin == origin


@pytest.mark.parametrize(
    ("name", "field", "default"),
    [
        ("SSO_PROXY_PORT", "port", 8080),
        ("AUTH0_CLIENT_IP_HEADER", "client_ip_header", ""),
        ("SSO_PROXY_DRAIN_SECONDS", "drain_seconds", 5.0),
    ],
)
def test_an_empty_optional_setting_means_its_default(name: str, field: str, default: object) -> None:
    # ConfigMaps and compose files often carry a variable with an empty value: that is "unset"
    env = {
        "WORKOS_CUSTOM_DOMAIN": "auth.example.com",
        "WORKOS_CLIENT_ID": "client_1",
        "AUTH0_FALLBACK_ORIGIN": "https://tenant.us.auth0.com",
        name: " ",
    }
    assert getattr(load_settings(env), field) == default


KEY1 = "k" * 32
KEY2 = "second-key-" + "x" * 30


def test_transaction_settings() -> None:
    s = load()
    assert (s.transaction_binding, s.transaction_ttl) == (True, 600)
    (random_key,) = s.transaction_keys  # unset: a random key per process
    assert len(random_key) == 32
    assert load().transaction_keys != s.transaction_keys
    s = load(SSO_PROXY_TRANSACTION_KEYS=f" {KEY1} , {KEY2},", SSO_PROXY_TRANSACTION_TTL="60")
    assert s.transaction_keys == (KEY1.encode(), KEY2.encode())
    assert s.transaction_ttl == 60
    assert load({"transaction_binding": "false"}).transaction_binding is False
    assert KEY1 not in repr(s) and KEY2 not in repr(s)


@pytest.mark.parametrize("value", ["short", f"{KEY1},short", f"{KEY1},{'y' * 31}"])
def test_a_short_key_is_one_clear_error_without_the_secret(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(SSO_PROXY_TRANSACTION_KEYS=value)
    message = str(info.value)
    assert message.startswith("SSO_PROXY_TRANSACTION_KEYS: key ")
    assert "at least 32" in message and "\n" not in message
    assert "short" not in message and KEY1 not in message and "yyyy" not in message


@pytest.mark.parametrize("env", ["SSO_PROXY_TRANSACTION_TTL", "SSO_PROXY_TRANSACTION_BINDING"])
def test_bad_transaction_settings(env: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{env: "-1"})
    assert str(info.value).startswith(f"{env}: ")


def test_tls_files(tmp_path: Any) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("cert")
    key.write_text("key")
    s = load(SSO_PROXY_TLS_CERT=str(cert), SSO_PROXY_TLS_KEY=str(key))
    assert (s.tls_cert, s.tls_key) == (str(cert), str(key))
    assert load({"tls_cert": str(cert), "tls_key": str(key)}).tls_cert == str(cert)
    assert load().tls_cert == ""
    with pytest.raises(ConfigError, match="SSO_PROXY_TLS_CERT: is not a readable file"):
        load(SSO_PROXY_TLS_CERT=str(tmp_path / "absent.pem"), SSO_PROXY_TLS_KEY=str(key))
    with pytest.raises(ConfigError, match="give both or neither"):
        load(SSO_PROXY_TLS_CERT=str(cert))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("x" * 32, True),
        ("0123456789abcdef" * 4, True),
        ("x" * 31, False),
        ("x" * 31 + " y", False),
        ("x" * 40 + "\u00e9", False),
    ],
)
def test_admin_token_is_long_printable_and_never_echoed(value: str, ok: bool) -> None:
    if ok:
        assert load(SSO_PROXY_ADMIN_TOKEN=value).admin_token == value.strip()
        assert value not in repr(load(SSO_PROXY_ADMIN_TOKEN=value)) or not value
        return
    with pytest.raises(ConfigError) as info:
        load(SSO_PROXY_ADMIN_TOKEN=value)
    assert str(info.value).startswith("SSO_PROXY_ADMIN_TOKEN: ")
    assert value not in str(info.value)
    assert "value not shown" in str(info.value)


def test_admin_hosts_and_reload_settle() -> None:
    settings = load(
        SSO_PROXY_ADMIN_HOSTS="sso-proxy-metrics.sso.svc, ops.example.com:9090", SSO_PROXY_RELOAD_SETTLE="1.5"
    )
    assert settings.admin_hosts == ("sso-proxy-metrics.sso.svc", "ops.example.com:9090")
    assert settings.reload_settle == 1.5
    assert load().reload_settle == 0.5
    assert load().admin_token == ""


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        (
            "SSO_PROXY_PORT",
            "abc",
            "SSO_PROXY_PORT: must be a whole number from 0 to 65535 (0: any free port) (got 'abc')",
        ),
        (
            "SSO_PROXY_PORT",
            "65536",
            "SSO_PROXY_PORT: must be a whole number from 0 to 65535 (0: any free port) (got '65536')",
        ),
        ("SSO_PROXY_ADMIN_PORT", "9090.5", "SSO_PROXY_ADMIN_PORT: must be a whole number from 0 to 65535"),
        (
            "SSO_PROXY_MAX_BODY_BYTES",
            "1MB",
            "SSO_PROXY_MAX_BODY_BYTES: must be a whole number of 1 or more (got '1MB')",
        ),
        ("SSO_PROXY_TRANSACTION_TTL", "0", "SSO_PROXY_TRANSACTION_TTL: must be a whole number of 1 or more (got '0')"),
        ("SSO_PROXY_CONNECT_TIMEOUT", "five", "SSO_PROXY_CONNECT_TIMEOUT: must be a number of seconds, 0 or more"),
        ("SSO_PROXY_READ_TIMEOUT", "nan", "SSO_PROXY_READ_TIMEOUT: must be a number of seconds, 0 or more"),
        (
            "SSO_PROXY_TRUSTED_PROXIES",
            "10.0.0.0/8,proxy.example.com",
            "SSO_PROXY_TRUSTED_PROXIES: must be comma-separated IP networks such as 10.0.0.0/8,fd00::/8 "
            "('proxy.example.com' is not one)",
        ),
    ],
)
def test_a_bad_value_says_what_it_must_be(env: str, value: str, message: str) -> None:
    """One line that says what the setting must be, never Python's own parser message."""
    with pytest.raises(ConfigError) as info:
        load(**{env: value})
    assert str(info.value).startswith(message)
    for python_says in ("invalid literal", "could not convert", "does not appear to be"):
        assert python_says not in str(info.value)


def test_a_bad_flag_says_what_it_must_be() -> None:
    with pytest.raises(ConfigError, match=r"^--port: must be a whole number from 0 to 65535 .*\(got 'http'\)$"):
        load({"port": "http"})


@pytest.mark.parametrize(
    ("env", "warnings"),
    [
        ({"SSO_PROXY_PORT": "1"}, []),
        (
            {"SSO_PROXY_PROT": "1"},
            ["SSO_PROXY_PROT: not a setting of sso-proxy, ignored; did you mean SSO_PROXY_PORT?"],
        ),
        (
            {"SSO_PROXY_ADMIN_TOKN": "secret-value"},
            ["SSO_PROXY_ADMIN_TOKN: not a setting of sso-proxy, ignored; did you mean SSO_PROXY_ADMIN_TOKEN?"],
        ),
        ({"SSO_PROXY_QQQQQQQQQQQQQQQQ": "x"}, ["SSO_PROXY_QQQQQQQQQQQQQQQQ: not a setting of sso-proxy, ignored"]),
        ({"PATH": "/bin", "WORKOS_API_KEY": "k", "SSO_PROXYISH": "x"}, []),  # other prefixes are not ours
    ],
)
def test_unknown_sso_proxy_variables_are_named_with_the_nearest_setting(
    env: dict[str, str], warnings: list[str]
) -> None:
    assert unknown_env_warnings(env) == warnings
    assert not any("secret-value" in line for line in unknown_env_warnings(env))


def test_serve_warns_about_an_unknown_variable_at_start(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "WORKOS_CUSTOM_DOMAIN": "auth.example.com",
        "WORKOS_CLIENT_ID": "client_1",
        "AUTH0_FALLBACK_ORIGIN": "https://tenant.example.com",
        "SSO_PROXY_PROT": "8081",
    }
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--routes", str(tmp_path / "missing.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2  # the missing map stops it, after the warning
    assert "SSO_PROXY_PROT: not a setting of sso-proxy, ignored; did you mean SSO_PROXY_PORT?" in (
        done.stdout + done.stderr
    )


@pytest.mark.parametrize(
    ("argv", "env", "off"),
    [
        (["--auth0-off"], {}, True),
        (["--auth0-off", "true"], {}, True),
        (["--auth0-off", "false"], {"AUTH0_FALLBACK_ORIGIN": "https://t.us.auth0.com"}, False),
        ([], {"SSO_PROXY_AUTH0_OFF": "true"}, True),
        (
            ["--auth0-off", "false"],
            {"SSO_PROXY_AUTH0_OFF": "true", "AUTH0_FALLBACK_ORIGIN": "https://t.us.auth0.com"},
            False,
        ),
    ],
)
def test_auth0_off_flag_is_a_switch(argv: list[str], env: dict[str, str], off: bool) -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    base = {"WORKOS_CUSTOM_DOMAIN": "auth.example.com", "WORKOS_CLIENT_ID": "client_01"}
    assert load_settings({**base, **env}, vars(parser.parse_args(argv))).auth0_off is off
