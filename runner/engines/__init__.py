"""HTTP engines behind one interface, chosen by name (see :mod:`.base`)."""

from __future__ import annotations

from ..plan import Plan
from .base import ERROR_CLASSES, Channel, Engine, TransportError


def select_engine(plan: Plan) -> tuple[type, str]:
    """Return the engine class the plan asks for and the reason it was chosen."""
    from .aiohttp_engine import AiohttpEngine

    if plan.engine == "aiohttp":
        return AiohttpEngine, "requested by the scenario (engine: aiohttp)"
    return AiohttpEngine, "engine: auto; aiohttp is the only engine available"


__all__ = ["Channel", "Engine", "ERROR_CLASSES", "TransportError", "select_engine"]
