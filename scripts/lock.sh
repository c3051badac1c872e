#!/usr/bin/env bash
# Regenerate the hash-pinned lock files the container image installs from:
#   requirements.lock        the runtime dependencies in pyproject.toml's [project] dependencies
#   requirements-build.lock  the build backend in [build-system] requires (builds the proxy wheel)
#
# Usage: scripts/lock.sh            (needs Python 3.11, the image's version, and PyPI)
#        scripts/lock.sh --upgrade  (move every pin to the newest allowed release)
#
# pip-tools itself runs from a throwaway venv at a pinned version. The machine's pip config is
# ignored (PIP_CONFIG_FILE=/dev/null, no find-links) so the lock holds PyPI's files only, and the
# hashes cover every wheel and sdist of each pinned release (any platform the image is built for).
set -euo pipefail

PIP_TOOLS_VERSION=7.6.2
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"lock.sh: Python 3.11 (the image's) is required, this is {sys.version.split()[0]}")
PY

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 CUSTOM_COMPILE_COMMAND=scripts/lock.sh
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT || true
"$python" -m venv "$tools"
"$tools/bin/pip" install --quiet "pip-tools==$PIP_TOOLS_VERSION"

section() {  # print one list from pyproject.toml, one requirement a line
  "$tools/bin/python" -c "
import sys, tomllib
data = tomllib.load(open('pyproject.toml', 'rb'))
print('\n'.join(data$1))"
}

compile() {  # $1: output file; stdin: requirements
  "$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --resolver=backtracking \
    "${@:2}" --output-file "$1" -
}

section "['project']['dependencies']" | compile requirements.lock "${@}"
section "['build-system']['requires']" | compile requirements-build.lock "${@}"
echo "wrote requirements.lock and requirements-build.lock"
