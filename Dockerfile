# syntax=docker/dockerfile:1
#
# sso-proxy container image.
#
#   version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
#   docker build -t "sso-proxy:$version" \
#     --build-arg VERSION="$version" --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 --read-only \
#     -e WORKOS_CUSTOM_DOMAIN=auth.example.com -e WORKOS_CLIENT_ID=client_123 \
#     -e AUTH0_FALLBACK_ORIGIN=https://my-tenant.us.auth0.com \
#     -v "$PWD/routes:/etc/sso-proxy:ro" "sso-proxy:$version"
#
# Released images are built by .github/workflows/release.yml (linux/amd64 and linux/arm64, SBOM and
# provenance attestations, signed with cosign) and published as ghcr.io/OWNER/sso-proxy:VERSION.
#
# The base image is pinned by version, written out in both FROM lines (not through an ARG) so that
# Dependabot (.github/dependabot.yml, docker) sees it and moves both in one pull request. Pinning by
# digest as well (python:3.11.14-slim-bookworm@sha256:...) is stronger, but no container registry
# is reachable from the machines this project is developed on, so the digest cannot be looked up and
# checked here: add it where the image is built and pushed (`docker buildx imagetools inspect <tag>`).

# ---------------------------------------------------------------------------------------------
# builder: a virtual environment with the locked dependencies and the project, nothing else.
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build

# Dependencies first (their layer survives source changes). --require-hashes: every file must match
# a hash in the lock, so a rebuild gets the same bytes; --no-deps: nothing outside the lock.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock

# The project itself, built into a wheel by the locked build backend (installed into this stage's
# throwaway system Python, so it never reaches the image) and installed without dependencies.
COPY requirements-build.lock ./
RUN pip install --require-hashes --no-deps -r requirements-build.lock
COPY pyproject.toml README.md LICENSE ./src/
COPY proxy ./src/proxy
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /build/dist ./src \
 && /opt/venv/bin/pip install --no-deps /build/dist/*.whl \
 && /opt/venv/bin/sso-proxy --help > /dev/null

# One version: the image label is the VERSION build arg, which must be the package's own version
# (pyproject.toml, read back from the installed metadata). A tag that differs fails the build here.
# Without the arg (a local build) the label says "dev".
ARG VERSION=dev
RUN if [ "${VERSION:-dev}" != dev ] && [ "$(/opt/venv/bin/sso-proxy --version)" != "sso-proxy ${VERSION:-dev}" ]; then \
      echo "VERSION=${VERSION:-dev} is not the package's $(/opt/venv/bin/sso-proxy --version)" >&2; exit 1; \
    fi

# ---------------------------------------------------------------------------------------------
# runtime: the base image plus the virtual environment. No compiler, no pip run, no writes.
FROM python:3.11.14-slim-bookworm

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/OWNER/sso-proxy

LABEL org.opencontainers.image.title="sso-proxy" \
      org.opencontainers.image.description="Moves enterprise SSO callbacks from Auth0 to WorkOS one connection at a time" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# .pyc files were compiled at install time in the builder; never write any at run time (the root
# file system may be read-only). Listen on every interface inside the container; the route map is
# the file routes.yaml in the directory /etc/sso-proxy (mount a directory, not a single file, so
# updates are seen: the service re-reads the file when its content hash changes).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SSO_PROXY_HOST=0.0.0.0 \
    SSO_PROXY_ADMIN_HOST=0.0.0.0 \
    SSO_PROXY_ROUTES=/etc/sso-proxy/routes.yaml

COPY --from=builder /opt/venv /opt/venv

# Numeric uid:gid so Kubernetes' runAsNonRoot can verify it; no passwd entry is needed.
USER 10001:10001

# 8080: public listener (callbacks, passthrough to Auth0). 9090: operations listener (/healthz,
# /readyz, /metrics, /routes, POST /-/reload); publish it only to monitoring, never publicly.
EXPOSE 8080 9090

# Docker only (Kubernetes uses the Deployment's probes). Exec form: no shell in the check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SSO_PROXY_ADMIN_PORT', '9090') + '/healthz', timeout=2)"]

# Exec form, so the server is PID 1 and receives SIGTERM itself: it installs its own handlers
# (/readyz turns 503, the public listener serves SSO_PROXY_DRAIN_SECONDS more, in-flight requests
# get SSO_PROXY_SHUTDOWN_TIMEOUT to finish). It starts no child processes, so there are no zombies
# to reap and no init (tini) is needed. One server process per container; scale with replicas.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sso-proxy"]
CMD ["serve"]
