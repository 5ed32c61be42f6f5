"""Statistics of latency samples (numpy): mean, percentiles, spread.

Percentiles use numpy's default linear interpolation between order statistics, the same rule as
`statistics.quantiles(method="inclusive")`, so p50 is the ordinary median and p99 over few runs
lies between the two slowest samples rather than jumping to the maximum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def percentiles(samples: Sequence[float], qs: Iterable[float] = PERCENTILES) -> dict[str, float]:
    """{"p50": ..., "p90": ..., "p99": ...} of the samples (linear interpolation)."""
    data = _as_array(samples)
    qs = list(qs)
    values = np.percentile(data, qs)
    return {f"p{q:g}": float(v) for q, v in zip(qs, values)}


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, min, max, std (population) and n of a set of timings."""
    data = _as_array(samples)
    return {"mean": float(data.mean()), **percentiles(data), "min": float(data.min()),
            "max": float(data.max()), "std": float(data.std()), "n": int(data.size)}


def stage_medians(timings: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-stage medians over a list of `decoder.last_timings` dicts (keys in first-seen order)."""
    keys: list[str] = []
    for t in timings:
        keys += [k for k in t if k not in keys]
    return {k: float(np.median([t[k] for t in timings if k in t])) for k in keys}


def _as_array(samples) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise ValueError("no samples")
    if not np.isfinite(data).all():
        raise ValueError("samples contain NaN or infinity")
    return data
