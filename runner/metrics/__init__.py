"""Mergeable measurements: latency histograms and request counters."""

from .histogram import RELATIVE_ERROR, Histogram
from .recorder import RequestStats

__all__ = ["Histogram", "RELATIVE_ERROR", "RequestStats"]
