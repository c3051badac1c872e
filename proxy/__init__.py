"""sso-proxy: move enterprise SSO from Auth0 to WorkOS one connection at a time."""

from __future__ import annotations

__version__ = "0.1.0"
