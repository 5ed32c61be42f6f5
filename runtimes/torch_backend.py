"""The PyTorch reference decoder (eager, fp32), on CPU or CUDA."""

from __future__ import annotations

import time

import numpy as np
import torch

from edgecodec import bitstream
from edgecodec.errors import RuntimeUnavailable, StreamError
from edgecodec.frames import to_image
from edgecodec.weights import LoadedModel, load_model

from . import tiling
from .base import Decoder, RuntimeInfo

TILE = (1024, 1024)  # pixels: larger images decode (and encode) tile by tile, in bounded memory


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeUnavailable("CUDA was requested but torch sees no CUDA device here")
    return torch.device(device)


def probe(device: str) -> tuple[bool, str]:
    if device == "cuda" and not torch.cuda.is_available():
        return False, "no CUDA device visible to torch"
    return True, ""


class TorchDecoder(Decoder):
    name = "torch"

    def __init__(self, model: str | LoadedModel = "tiny", device: str = "auto", threads: int | None = None,
                 tile: tuple[int, int] = TILE):
        loaded = model if isinstance(model, LoadedModel) else load_model(model)
        super().__init__(loaded.codec.stream_spec())
        self.loaded = loaded
        self.device = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)
        self.codec = loaded.codec.to(self.device).eval()
        m = self.spec.multiple
        if tile[0] % m or tile[1] % m:
            raise RuntimeUnavailable(f"tile {tile[0]}x{tile[1]} is not a multiple of the model's {m} px")
        self.tile = (tile[0] // self.spec.downsample, tile[1] // self.spec.downsample)

    def grid_for(self, h: int, w: int) -> tiling.Grid | None:
        if self.spec.coder != "vq":  # a family-coded stream decodes in one piece (its family has no tiling)
            return None
        return None if h <= self.tile[0] and w <= self.tile[1] else tiling.Grid.plan(h, w, self.tile)

    @property
    def info(self) -> RuntimeInfo:
        dev = next(self.codec.parameters()).device
        label = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        return RuntimeInfo("torch", f"{dev.type}:{label}" if dev.type == "cuda" else "cpu", "fp32",
                           details={"torch": torch.__version__, "threads": torch.get_num_threads(),
                                    "model": self.loaded.source})

    @property
    def model(self) -> dict:
        return {"name": self.loaded.name, "source": self.loaded.source, "trained": self.loaded.trained,
                "seeds": self.loaded.seeds}

    def decode(self, data: bytes) -> np.ndarray:
        if self.spec.coder == "vq":
            return super().decode(data)
        # a family that codes its own payload decodes it, host side included (OneDC: z, priors, y)
        header, payload = bitstream.payload_of(data, self.spec)
        out, host, timings = self.codec.decode_payload(payload)
        if header is not None and (header.height, header.width) != (host["height"], host["width"]):
            raise StreamError(f"corrupted stream: the header says {header.width}x{header.height}, its payload "
                              f"{host['width']}x{host['height']}")
        t = time.perf_counter()
        image = to_image(out, host["height"], host["width"])
        self.last_timings = {**timings, "post_ms": (time.perf_counter() - t) * 1e3}
        return image

    def encode_payload(self, rgb: np.ndarray) -> bytes:
        return self.codec.write_payload(rgb)[0]

    @torch.inference_mode()
    def encode_indices(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.device)
        return self.codec.encode_indices(x, self.spec.num_rates - 1).cpu().numpy()

    @torch.inference_mode()
    def run_graph(self, indices: np.ndarray, noise: np.ndarray, rate: int) -> np.ndarray:
        idx = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(self.device)
        eps = torch.from_numpy(np.ascontiguousarray(noise, dtype=np.float32)).to(self.device)
        return self.codec.decode_graph(idx, eps, rate).float().cpu().numpy()
