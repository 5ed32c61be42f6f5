"""Host-side pixel handling shared by the encoder and every decoder backend (numpy only)."""

from __future__ import annotations

import numpy as np


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def to_model_input(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """H x W x 3 uint8 -> 1 x 3 x Hp x Wp float32 in [-1, 1], edge-padded to the model's multiple."""
    h, w = rgb.shape[:2]
    hp, wp = padded_size(h, w, multiple)
    padded = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    x = padded.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
    return np.ascontiguousarray(x)


def to_image(out: np.ndarray, height: int, width: int) -> np.ndarray:
    """1 x 3 x Hp x Wp float in [0, 1] (graph output) -> H x W x 3 uint8, cropped back."""
    img = np.clip(out[0, :, :height, :width], 0.0, 1.0) * 255.0
    return np.ascontiguousarray(np.rint(img).astype(np.uint8).transpose(1, 2, 0))
