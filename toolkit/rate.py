"""Rate-aware noise modulation: which noise level and timestep each rate decodes with.

The rule (documented in the README): for rate index r (0 = lowest bpp),

    sigma(r)      = sigma_max * decay**r          noise std added to the dequantized latent
    t(r)          = t_max * sigma(r) / sigma_max   timestep fed to the denoiser's time embedding
                                                   (t_max = 1; an imported DiffO model: its T - 1)
    input_scale(r) = 1 / sqrt(sigma(r)**2 + 1)     ResShift's input normalisation

so coarser codes get stronger noise and a later timestep (more denoising), finer codes milder
noise. With DiffO's kappa = 2.0 and sqrt(eta_T) = 0.8, sigma_max = 1.6 and rate 0 reproduces its
only operating point exactly: t = 1 (of T = 2) and input scale 0.530. numpy-free on purpose:
every runtime reads the same table from a checkpoint or a bundle manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RatePoint:
    rate: int
    sigma: float
    timestep: float
    input_scale: float


def rate_table(sigma_max: float, decay: float, num_rates: int, t_max: float = 1.0) -> list[RatePoint]:
    points = []
    for r in range(num_rates):
        sigma = sigma_max * decay**r
        points.append(RatePoint(r, sigma, t_max * sigma / sigma_max, 1.0 / math.sqrt(sigma * sigma + 1.0)))
    return points


def table_to_json(points: list[RatePoint]) -> list[dict]:
    return [asdict(p) for p in points]


def table_from_json(items: list[dict]) -> list[RatePoint]:
    return [RatePoint(int(d["rate"]), float(d["sigma"]), float(d["timestep"]), float(d["input_scale"]))
            for d in items]
