#!/bin/sh
# A scratch copy of this checkout with the callback path compiled by mypyc, to measure that option
# (bench/NOTES.md, "mypyc on the callback path"). Not how the service is built or shipped.
#
#   . .venv/bin/activate && sh bench/mypyc_build.sh /tmp/sso-mypyc
#   (cd /tmp/sso-mypyc && python bench/stack_cost.py)       # then the same here, alternating
#
# Compiled: the routing core, the app, the upstream client, metrics, logs, progress, retired (16
# modules, unchanged). Not compiled: proxy/edge/limits.py (its protocol subclasses uvicorn's, and
# its trailer sink subclasses list, which mypyc does not compile).
set -eu
dest=$1
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dest"
mkdir -p "$dest"
git -C "$here" archive HEAD | tar -x -C "$dest"
cd "$dest"
mv pyproject.toml pyproject.toml.off # the setuptools mypyc drives refuses its license field
printf '[mypy]\nignore_missing_imports = True\n' >mypy.ini
mypyc proxy/routing/callback.py proxy/routing/fields.py proxy/routing/decide.py proxy/routing/binding.py \
    proxy/routing/logins.py proxy/routing/txcookie.py proxy/routing/cookieheader.py proxy/routing/auth0state.py \
    proxy/routing/routemap.py proxy/routing/packedmap.py proxy/app.py proxy/upstream.py proxy/metrics.py \
    proxy/logs.py proxy/progress.py proxy/retired.py >build.log 2>&1 || { tail -20 build.log; exit 1; }
find proxy -name '*.so' | wc -l
