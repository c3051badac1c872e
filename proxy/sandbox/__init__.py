"""The local stand-ins for Auth0 and WorkOS, and ``sso-proxy sandbox``, which runs them with the proxy."""
