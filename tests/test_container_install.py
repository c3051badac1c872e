"""The image's install and start steps, reproduced without a Docker engine.

The Dockerfile itself is interpreted: the builder stage's ENV, WORKDIR, COPY and RUN run in a
temporary directory standing in for the image's file system (``/opt/venv``, ``/build`` and
``/etc/sso-proxy`` are mapped into it; a fresh venv stands in for the base image's Python), so an
edit to the Dockerfile is exercised here as written. Then the runtime stage's ENV, ENTRYPOINT and
CMD start the installed service, as the container would, with a clean environment and the
repository's example ``routes.yaml`` mounted where the image expects it.

Deviations from a container, each forced by running on a shared host: the two listeners get free
ports instead of 8080/9090 (through ``SSO_PROXY_PORT``/``SSO_PROXY_ADMIN_PORT``, which the service
reads), the process runs as the test's user, and the drain is shortened to keep the test quick.

This needs PyPI (the lock is installed for real, hash-checked). Without network it fails: it never
skips.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_deploy import DOCKERFILE, ROOT, Instruction, exec_form, parse_dockerfile, parse_env

PIP_TIMEOUT = 900
DRAIN_SECONDS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ImageRoot:
    """Absolute image paths mapped into a temporary directory."""

    MAPPED = ("/opt/venv", "/build", "/etc/sso-proxy")

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def rewrite(self, text: str) -> str:
        for prefix in self.MAPPED:
            text = re.sub(re.escape(prefix) + r"(?=/|\s|$|:|')", str(self.path(prefix)), text)
        return text


def base_python() -> str:
    """An interpreter of the image's Python minor version (the lock is for it)."""
    image = next(i.args for i in parse_dockerfile(DOCKERFILE.read_text()) if i.keyword == "FROM")
    match = re.search(r"python:(\d+)\.(\d+)", image)
    assert match, image
    wanted = (int(match[1]), int(match[2]))
    if sys.version_info[:2] == wanted:
        return sys.executable
    found = shutil.which(f"python{wanted[0]}.{wanted[1]}")
    if found is None:
        pytest.fail(f"the image runs Python {wanted[0]}.{wanted[1]}; install it to run this test")
    return found


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """A container-like environment: nothing from the test runner but PATH basics and pip's
    certificate setting (needed to reach PyPI here)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    for key in (
        "PIP_CERT",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value)


def run_builder_stage(instructions: list[Instruction], image: ImageRoot, system_python: Path) -> None:
    """ENV, WORKDIR, COPY and RUN of the builder stage, in order."""
    env = clean_env({"PATH": f"{system_python.parent}:/usr/local/bin:/usr/bin:/bin"})
    workdir = image.path("/")
    for ins in instructions:
        if ins.keyword in ("FROM", "ARG"):
            continue
        if ins.keyword == "ENV":
            env.update({k: expand(v, env) for k, v in parse_env(ins.args).items()})
        elif ins.keyword == "WORKDIR":
            workdir = image.path(ins.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            *sources, dest = ins.args.split()
            target = workdir / dest if not dest.startswith("/") else image.path(dest)
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    destination = target if not dest.endswith("/") else target / origin.name
                    shutil.copytree(
                        origin, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                elif dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
                else:
                    shutil.copy2(origin, target)
        elif ins.keyword == "RUN":
            command = image.rewrite(ins.args)
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, (
                f"RUN {ins.args}\nfailed ({done.returncode}); without network to PyPI this test "
                f"cannot pass:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        else:
            pytest.fail(f"the builder stage uses {ins.keyword}, which this test does not reproduce yet")


class FakeAuth0(BaseHTTPRequestHandler):
    """The fallback origin: answers every GET with 200 and the path it saw."""

    def do_GET(self) -> None:
        body = json.dumps({"origin": "auth0", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def auth0_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAuth0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_for(url: str, status: int, deadline: float, proc: subprocess.Popen[str]) -> None:
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the service exited ({proc.returncode}):\n{proc.communicate()[0]}"
        try:
            last = fetch(url)[0]
            if last == status:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    pytest.fail(f"{url}: wanted {status}, last saw {last!r}")


def snapshot(tree: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in tree.rglob("*") if p.is_file()}


def test_image_installs_from_the_lock_and_serves_until_sigterm(tmp_path: Path, auth0_origin: str) -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    last_stage = max(i.stage for i in instructions)
    image = ImageRoot(tmp_path / "image")

    # The base image's Python: a fresh venv of the same minor version, with nothing installed.
    system = tmp_path / "system-python"
    subprocess.run([base_python(), "-m", "venv", str(system)], check=True, timeout=120)
    run_builder_stage([i for i in instructions if i.stage == 0], image, system / "bin" / "python")

    venv = image.path("/opt/venv")
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import proxy; print(proxy.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=clean_env({}),
    ).stdout
    assert installed.startswith(str(venv)), f"proxy imported from {installed}, not the image's venv"

    # The runtime stage: its ENV, the routes directory, ENTRYPOINT + CMD.
    final = [i for i in instructions if i.stage == last_stage]
    env = clean_env({})
    for ins in final:
        if ins.keyword == "ENV":
            env.update({k: expand(image.rewrite(v), env) for k, v in parse_env(ins.args).items()})
    routes = Path(env["SSO_PROXY_ROUTES"])
    assert routes.is_relative_to(image.root), "SSO_PROXY_ROUTES must be inside /etc/sso-proxy"
    routes.parent.mkdir(parents=True)
    shutil.copy2(ROOT / "routes.yaml", routes)
    port, admin_port = free_port(), free_port()
    env.update(
        {
            "WORKOS_CUSTOM_DOMAIN": "auth.example.test",
            "WORKOS_CLIENT_ID": "client_123",
            "AUTH0_FALLBACK_ORIGIN": auth0_origin,
            "SSO_PROXY_PORT": str(port),
            "SSO_PROXY_ADMIN_PORT": str(admin_port),
            "SSO_PROXY_DRAIN_SECONDS": str(DRAIN_SECONDS),
        }
    )
    entrypoint = [exec_form(i.args) for i in final if i.keyword == "ENTRYPOINT"][-1]
    cmd = [exec_form(i.args) for i in final if i.keyword == "CMD"][-1]
    argv = entrypoint + cmd
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable == str(venv / "bin" / argv[0]), f"{argv[0]} resolves to {executable}"

    before = snapshot(venv)
    workdir = tmp_path / "cwd"  # an empty working directory: nothing importable from the repo
    workdir.mkdir()
    proc = subprocess.Popen(
        [executable, *argv[1:]], env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        public = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        wait_for(f"{admin}/healthz", 200, deadline, proc)
        wait_for(f"{admin}/readyz", 200, deadline, proc)

        # The image's HEALTHCHECK command, as Docker would run it.
        check = next(i.args for i in final if i.keyword == "HEALTHCHECK").partition("CMD ")[2]
        check_argv = exec_form(check.strip())
        done = subprocess.run(
            [shutil.which(check_argv[0], path=env["PATH"]) or check_argv[0], *check_argv[1:]],
            env=env,
            cwd=workdir,
            capture_output=True,
            timeout=10,
            check=False,
        )
        assert done.returncode == 0, done.stderr

        # Public listener: a cut-over connection is redirected to WorkOS; other paths go to Auth0.
        status, headers, _ = fetch(f"{public}/login/callback?connection=acme-okta", b"SAMLResponse=x")
        assert status == 307
        assert headers["location"].startswith("https://auth.example.test/sso/client_123/auth0/callback?")
        status, _, body = fetch(f"{public}/authorize?client_id=app")
        assert (status, json.loads(body)) == (200, {"origin": "auth0", "path": "/authorize?client_id=app"})

        # SIGTERM, as `docker stop` or the kubelet sends it to PID 1: not ready at once, the public
        # listener serves through the drain, then a clean exit.
        proc.send_signal(signal.SIGTERM)
        wait_for(f"{admin}/readyz", 503, time.monotonic() + 1.5, proc)
        assert fetch(f"{public}/authorize")[0] == 200, "the public listener must serve during the drain"
        output, _ = proc.communicate(timeout=DRAIN_SECONDS + 20 + 5)
        assert proc.returncode == 0, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    # Read-only root file system: the run wrote nothing into the image's venv (no .pyc, no caches).
    assert snapshot(venv) == before
    assert list(workdir.iterdir()) == []
    assert shlex.join(argv) == "sso-proxy serve"
