"""Where runtimes keep what they compile (OpenVINO kernels, TensorRT engines, torch.compile code):
$EDGECODEC_CACHE, else ~/.cache/edgecodec, one subdirectory per runtime."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("EDGECODEC_CACHE") or Path.home() / ".cache" / "edgecodec")
