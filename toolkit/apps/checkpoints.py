"""Training checkpoints (train, distill): one file per run directory, written atomically, so a job
killed at any moment leaves the previous checkpoint or the new one, never half of one."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from edgecodec.errors import EdgecodecError
from edgecodec.imageio import write_bytes_atomic

NAME = "checkpoint.pt"


def save(run_dir: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(Path(run_dir) / NAME, buffer.getvalue())


def load(run_dir: Path) -> dict:
    path = Path(run_dir) / NAME
    if not path.is_file():
        raise EdgecodecError(f"--resume: no checkpoint in {run_dir}")
    try:
        return torch.load(path, weights_only=False)
    except Exception as exc:  # noqa: BLE001  (pickle and zip errors of many kinds)
        raise EdgecodecError(f"--resume: {path} is not a readable checkpoint ({exc.__class__.__name__})") from None
