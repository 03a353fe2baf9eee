"""Load models: how a stage decides when virtual users send (one module per model).

Each model module owns its stage's run (``run``), how a stage is split across
worker processes (``share``) and how it is described in a dry run
(``describe``). :data:`MODELS` maps a stage's ``model`` to its module.
"""

from __future__ import annotations

from . import closed, open as open_model

MODELS = {"closed": closed, "open": open_model}

__all__ = ["MODELS"]
