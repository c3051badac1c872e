"""End-to-end suite: a real browser, real signed SAML, real OIDC tokens, the real proxy."""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# pysaml2 7.5 reads cryptography's deprecated ``modes.CFB`` when ``saml2.cryptography.symmetric``
# is imported; the suite runs with warnings as errors, so that one import is made here, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import saml2.cryptography.symmetric  # noqa: F401
