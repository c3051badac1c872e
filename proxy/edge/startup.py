"""Signals that arrive before the server's event loop handles them.

``sso-proxy serve`` installs these handlers as its first step, before the heavy imports and the
initial route map load, so a SIGHUP in the first moments of start-up (a config tool reacting to the
new pod, a ``kill -HUP`` racing a restart) no longer kills the process with the default action.
They only record what arrived; :func:`proxy.server.serve` replaces them with the event loop's
handlers and then acts on the record: a SIGHUP reloads the route map once serving (the file may
have changed after it was read), a SIGTERM/SIGINT stops before the listeners open.

This module imports only the standard library, so installing the handlers costs nothing.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from types import FrameType


@dataclass(slots=True)
class StartupSignals:
    """What arrived before the event loop took over."""

    hangup: int = 0
    terminate: list[str] = field(default_factory=list)

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.hangup += 1

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.terminate.append(signal.Signals(signum).name)

    def install(self) -> StartupSignals:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        return self

    @staticmethod
    def restore() -> None:
        """Back to the defaults (the command ends without serving)."""
        for sig in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
