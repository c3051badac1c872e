"""The local stand-ins for Auth0 and WorkOS, and ``sso-proxy sandbox``, which runs them with the proxy.

The stand-ins are real HTTP servers behaving as the documented services do on the paths the proxy
touches. Tests, benchmarks and the sandbox use the same ones.
"""
