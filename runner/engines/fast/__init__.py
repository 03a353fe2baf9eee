"""The fast engine, in three parts: request encoding, the connection protocol, and the engine.

See :mod:`.engine` for how a virtual user's request travels on the callback path.
"""

from .encoding import FastEngineUnsupported
from .engine import FastEngine, FastTransport, unsupported_reason
from .protocol import _error_class_for_connect, _error_class_for_lost  # noqa: F401 (classifier tests)

__all__ = ["FastEngine", "FastEngineUnsupported", "FastTransport", "unsupported_reason"]
