"""The latency statistics every layer reports, defined once.

Results, time series, thresholds, ``runner compare`` and the reporters all
name the same quantiles; they take the names (and the q of each) from here,
so adding one is a one-line change.
"""

#: Reported quantiles: key -> q.
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))
#: Their keys, in order.
PERCENTILE_KEYS = tuple(key for key, _ in QUANTILES)
#: Every key of a ``latency_ms`` block, in reading order.
LATENCY_KEYS = ("min", "mean", *PERCENTILE_KEYS, "max")
#: What an interval of the time series keeps (its min and mean are not kept).
INTERVAL_KEYS = (*PERCENTILE_KEYS, "max")
