"""The fused runtime: the decode graph through torch.compile. On CPUs inductor writes C++/OpenMP
kernels (fused element-wise work around the oneDNN convolutions and eager's GroupNorm kernel,
constant-folded, weights pre-packed: `freezing`); on CUDA, Triton kernels replayed as CUDA graphs
(`reduce-overhead`) with fp16/bf16 autocast if asked.

A graph compiles once per tile shape on first use (tens of seconds to minutes, cached under the
edgecodec cache directory, so later processes start warm); `jit_compile_ms` reports that time
apart from steady-state decoding, and `info` what was compiled for which device and dtype.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from edgecodec.cache import cache_root
from edgecodec.errors import RuntimeUnavailable
from edgecodec.norm import opaque_group_norms
from edgecodec.zoo import DecodeGraph

from .base import RuntimeInfo
from .torch_backend import TILE, TorchDecoder

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def configure_inductor() -> str:
    """The compile cache goes under the edgecodec cache unless the user chose one (inductor writes
    its own default into the variable the first time anything compiles, so that value counts as
    unset). Freezing folds the weights into the graph, which lets inductor pre-pack them for oneDNN."""
    import torch._inductor.config as inductor
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, "", default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root() / "inductor")
    inductor.freezing = True
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


class CompiledDecoder(TorchDecoder):
    name = "torch-compiled"

    def __init__(self, model="tiny", device: str = "auto", threads: int | None = None, tile: tuple[int, int] = TILE,
                 mode: str | None = None, dtype: str = "fp32"):
        super().__init__(model, device, threads, tile)
        on_cuda = self.device.type == "cuda"
        if dtype not in DTYPES:
            raise RuntimeUnavailable(f"unknown dtype '{dtype}' for torch-compiled: choose from {', '.join(DTYPES)}")
        if dtype == "fp16" and not on_cuda:
            raise RuntimeUnavailable("torch-compiled runs fp16 on CUDA only (CPUs: fp32, or bf16 where supported)")
        self.mode = mode or ("reduce-overhead" if on_cuda else "default")
        if self.mode not in MODES:
            raise RuntimeUnavailable(f"unknown torch.compile mode '{self.mode}': choose from {', '.join(MODES)}")
        self.dtype = dtype
        self.cache_dir = configure_inductor()
        # on CPUs GroupNorm stays eager's kernel (edgecodec.norm says why); the encoder keeps self.codec
        self.graph = DecodeGraph(self.codec if on_cuda else opaque_group_norms(self.codec)).eval()
        # static shapes: one specialised graph per tile shape (tiling keeps the shapes few)
        self.compiled = torch.compile(self.graph, mode=None if self.mode == "default" else self.mode, dynamic=False)
        self.compiled_for: dict[tuple[int, int], float] = {}  # latent shape -> compile (first call) ms

    @property
    def jit_compile_ms(self) -> float:
        return sum(self.compiled_for.values())

    @torch.inference_mode()
    def run_graph(self, indices: np.ndarray, noise: np.ndarray, rate: int) -> np.ndarray:
        # every stage, masked by rate in the graph: one compile serves all rates
        full = torch.from_numpy(self.all_stages(indices)).to(self.device)
        eps = torch.from_numpy(np.ascontiguousarray(noise, dtype=np.float32)).to(self.device)
        rate_t = torch.tensor([rate], dtype=torch.int64, device=self.device)
        shape = tuple(full.shape[2:])
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=DTYPES[self.dtype], enabled=self.dtype != "fp32"):
            out = self.compiled(full, eps, rate_t)
        out = out.float().cpu().numpy()  # copies out of CUDA-graph memory before the next replay
        if shape not in self.compiled_for:
            self.compiled_for[shape] = (time.perf_counter() - t0) * 1e3
        return out

    @property
    def info(self) -> RuntimeInfo:
        base = super().info
        compiled = [{"latent": list(s), "pixels": [s[0] * self.spec.downsample, s[1] * self.spec.downsample],
                     "compile_ms": round(ms, 1)} for s, ms in self.compiled_for.items()]
        details = {**base.details, "mode": self.mode, "dtype": self.dtype, "compiled": compiled,
                   "compile_cache": self.cache_dir, "backend": "inductor",
                   "group_norm": "inductor" if self.device.type == "cuda" else "eager kernel (opaque custom op)"}
        return RuntimeInfo(self.name, base.device, self.dtype, details=details)


def probe(device: str) -> tuple[bool, str]:
    from torch._inductor import cpu_vec_isa

    if device == "cuda" and not torch.cuda.is_available():
        return False, "no CUDA device visible to torch"
    if not torch.cuda.is_available():
        import shutil

        if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
            return False, "inductor needs a C++ compiler on CPUs (apt-get install g++)"
        if not cpu_vec_isa.pick_vec_isa():
            return False, "inductor found no SIMD instruction set to compile for on this CPU"
    return True, ""
