"""The built-in target's settings: one shape from the scenario to the server.

The compiler builds a :class:`TargetConfig` from the scenario's ``builtin:``
block and puts it in the plan; ``runner run`` hands that same object to the
child server, and ``runner serve`` builds one from its flags. It checks
itself on construction, in the caller's process, and imports nothing heavy,
so plans stay cheap to load in worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .faults import FAULT_KINDS
from .responses import MAX_BODY_SIZE


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """How the built-in target answers when a request does not say otherwise.

    ``faults`` makes ordinary requests fail now and then: ``(kind,
    probability)`` pairs (kinds of :data:`FAULT_KINDS`, probabilities adding up
    to at most 1), drawn per request from a RNG seeded with ``seed``.
    """

    body_size: int = 1024
    delay_min_s: float = 0.0
    delay_max_s: float = 0.0
    seed: int = 0
    faults: tuple[tuple[str, float], ...] = ()
    tls: bool = False  # serve https with a throwaway certificate (the run trusts its CA, nothing else does)

    def __post_init__(self) -> None:
        # Fail at construction, in the caller's process, rather than in a
        # child server whose stderr someone has to go and read.
        if not 0 <= self.body_size <= MAX_BODY_SIZE:
            raise ValueError(f"body_size must be within 0..{MAX_BODY_SIZE}, got {self.body_size}")
        for name in ("delay_min_s", "delay_max_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.delay_min_s > self.delay_max_s:
            raise ValueError(
                f"delay_min_s ({self.delay_min_s}) must not exceed delay_max_s ({self.delay_max_s})"
            )
        # Accept any iterable of pairs; keep a tuple so the config stays hashable.
        object.__setattr__(self, "faults", tuple((str(kind), float(p)) for kind, p in self.faults))
        total = 0.0
        for kind, probability in self.faults:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
            if not (math.isfinite(probability) and 0 <= probability <= 1):
                raise ValueError(f"the probability of fault {kind!r} must be within 0..1, got {probability!r}")
            total += probability
        if total > 1 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:g}, more than 1")
