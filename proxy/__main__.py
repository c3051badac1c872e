"""``python -m proxy``: the same as the ``sso-proxy`` console script."""

from __future__ import annotations

from proxy.cli import main

raise SystemExit(main())
