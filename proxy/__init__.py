"""sso-proxy: move enterprise SSO from Auth0 to WorkOS one connection at a time."""

from __future__ import annotations

from typing import Callable

DISTRIBUTION = "sso-proxy"


def read_version(lookup: Callable[[str], str] | None = None) -> str:
    """The version of the installed package (its metadata, written from pyproject.toml at install).

    A checkout that was never installed (``python -m proxy`` from a clone, no ``pip install``) has no
    metadata: then the ``[project] version`` of the pyproject.toml beside the package is read, so
    there is still one source, and ``0+unknown`` if even that is missing (a copied-out ``proxy/``).
    """
    from importlib import metadata

    try:
        return (lookup or metadata.version)(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _checkout_version()


def _checkout_version() -> str:
    import tomllib
    from pathlib import Path

    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
            project = tomllib.load(file)["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "0+unknown"
    return str(project.get("version", "0+unknown"))


__version__ = read_version()
