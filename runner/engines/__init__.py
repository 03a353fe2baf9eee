"""HTTP engines behind one interface, chosen by name (see :mod:`.base`)."""

from __future__ import annotations

from ..plan import Plan
from .base import ERROR_CLASSES, Channel, Engine, TransportError, describe


def select_engine(plan: Plan, base_url: str | None = None) -> tuple[type, str]:
    """Return the engine class for ``plan`` against ``base_url`` and the reason it was chosen.

    ``engine: fast`` and ``engine: aiohttp`` force that engine; ``engine: auto``
    picks the fast engine unless the run needs something only aiohttp has.
    ``base_url`` is the URL actually loaded (the built-in target's when the
    plan has none); without it the plan's own target is judged.
    """
    # Import only the engine that runs: importing aiohttp alone takes a good
    # fraction of a second.
    from .fast import FastEngine, unsupported_reason

    if plan.engine == "fast":
        return FastEngine, "requested by the scenario (engine: fast)"
    if plan.engine == "auto":
        lacking = unsupported_reason(plan, base_url)
        if lacking is None:
            url = base_url if base_url is not None else plan.target_url
            if url is not None and url.lower().startswith("https:"):
                return FastEngine, "engine: auto; https on the fast engine (OpenSSL over memory BIOs)"
            return FastEngine, "engine: auto; the scenario uses only what the fast engine supports"
        reason = f"engine: auto; the fast engine does not support {lacking}"
    else:
        reason = "requested by the scenario (engine: aiohttp)"
    from .aiohttp_engine import AiohttpEngine

    return AiohttpEngine, reason


__all__ = ["Channel", "Engine", "ERROR_CLASSES", "TransportError", "describe", "select_engine"]
