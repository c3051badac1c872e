"""The pure routing core a callback flows through: parsed facts, the route map, the decision, the binding.

Nothing here does IO or imports the service, the operator's tools or the stand-ins: it is tested by
tables and used alike by the service (``proxy.app``), ``sso-proxy explain`` and the sandbox.
"""
