"""OpenVINO decoder: CPU, Intel GPU or AUTO (no torch). LATENCY hint, a model cache, and reduced
precision guarded by an automatic f32 fallback."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from edgecodec.cache import cache_root
from edgecodec.errors import RuntimeUnavailable

from .base import RuntimeInfo
from .bundled import BundleDecoder

DEVICES = {"cpu": "CPU", "gpu": "GPU", "auto": "AUTO"}
FINGERPRINT_KEY = ["edgecodec", "fingerprint"]  # rt_info written at export (export.openvino_export.stamp)


@dataclass
class Compiled:
    """One compiled graph, with what recompiling it in f32 needs. An infer request serves one call
    at a time, so each thread gets its own (a shared decoder is thread-safe)."""

    compiled: object
    hint: str | None  # the INFERENCE_PRECISION_HINT asked for (None: the device's default)
    model: object
    graph: dict
    local: threading.local = field(default_factory=threading.local)

    @property
    def request(self):
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        return request


class OvDecoder(BundleDecoder):
    """Options: `threads` (CPU); `inference_precision` (f32, f16, bf16) overriding the policy of
    `precision_hint`; `activations_scale` (GPU: OpenVINO's ACTIVATIONS_SCALE_FACTOR, which scales
    activations down ahead of the layers that overflow f16)."""

    def __init__(self, bundle, device: str = "cpu", threads: int | None = None, sizes=None,
                 inference_precision: str | None = None, activations_scale: float | None = None):
        import openvino as ov

        self.ov, self.device = ov, DEVICES[device]
        self.core = ov.Core()
        cache = cache_root() / "openvino"
        cache.mkdir(parents=True, exist_ok=True)
        self.core.set_property({"CACHE_DIR": str(cache)})  # GPU kernels compile in seconds to minutes
        self.threads, self.inference_precision, self.activations_scale = threads, inference_precision, activations_scale
        self.f32_fallbacks: list[list[int]] = []
        if self.device != "AUTO" and self.device not in self.core.available_devices:
            raise RuntimeUnavailable(f"OpenVINO device {self.device} is not available here "
                                     f"(available: {', '.join(self.core.available_devices)})")
        super().__init__(bundle, sizes)
        self.name = f"openvino-{device}"

    def load_graph(self, graph: dict):
        if "openvino" not in graph["files"]:
            raise RuntimeUnavailable(f"bundle {self.bundle.root} has no OpenVINO IR (export with --format openvino)")
        return self.core.read_model(str(self.bundle.path(graph["files"]["openvino"])))

    def precision_hint(self, graph: dict) -> str | None:
        """The CPU plugin silently computes in bf16 on CPUs with AMX/AVX512-BF16 (seen here: errors
        of 0.1 on the [0, 1] image), so fp32 bundles, and int8 ones on CPU, ask for f32. An fp16
        bundle, and an int8 one on GPU, take the device's own reduced precision (f16 on GPU, bf16
        where the CPU has it), guarded by `infer`'s f32 fallback."""
        if self.inference_precision:
            return self.inference_precision
        precision = graph.get("precision", self.bundle.precision)
        if self.device == "AUTO" or precision == "fp16" or (precision == "int8" and self.device == "GPU"):
            return None
        return "f32"

    def compile_graph(self, model, graph: dict, hint: str | None = None) -> Compiled:
        hint = hint or self.precision_hint(graph)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        if self.threads and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.activations_scale and self.device == "GPU":
            config["ACTIVATIONS_SCALE_FACTOR"] = float(self.activations_scale)
        return Compiled(self.core.compile_model(model, self.device, config), hint, model, graph)

    def io_shapes(self, c: Compiled) -> dict[str, list[int]]:
        def name(port) -> str:  # a tensor may also carry its producer's internal name ("/Mul_4_output_0")
            return min(sorted(port.get_names()), key=lambda n: n.startswith("/"))

        ports = [*c.compiled.inputs, *c.compiled.outputs]
        return {name(p): [d.get_length() if d.is_static else -1 for d in p.get_partial_shape()] for p in ports}

    def stamped_fingerprint(self, c: Compiled) -> str | None:
        return c.model.get_rt_info(FINGERPRINT_KEY).astype(str) if c.model.has_rt_info(FINGERPRINT_KEY) else None

    def run(self, c: Compiled, feeds: dict[str, np.ndarray]) -> np.ndarray:
        c.request.infer(feeds)
        return c.request.get_output_tensor(0).data.copy()

    def infer(self, c: Compiled, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self.run(c, feeds)
        if c.hint != "f32" and not np.isfinite(out).all():
            # reduced precision overflowed (VAE-style decoders do in f16): this graph runs in f32 from now on
            fresh = self.compile_graph(c.model, c.graph, "f32")
            c.compiled, c.hint, c.local = fresh.compiled, fresh.hint, fresh.local
            self.f32_fallbacks.append(list(c.graph["size"]) if "size" in c.graph else ["encoder"])
            out = self.run(c, feeds)
        return out

    @property
    def info(self) -> RuntimeInfo:
        compiled = next(iter(self._graphs.values())).compiled
        devices = list(compiled.get_property("EXECUTION_DEVICES"))
        try:
            hint = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        except RuntimeError:  # AUTO does not expose it
            hint = "?"
        names = [self.core.get_property(d.split(".")[0], "FULL_DEVICE_NAME") for d in devices]
        compute = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint, hint)
        precision = compute if self.bundle.precision != "int8" else f"int8+{compute}"
        return RuntimeInfo(self.name, ",".join(devices), precision, devices,
                           {"openvino": self.ov.__version__, "inference_precision": hint,
                            "device_names": names, "bundle": str(self.bundle.root),
                            "f32_fallbacks": self.f32_fallbacks})


def probe(device: str) -> tuple[bool, str]:
    try:
        import openvino as ov

        available = ov.Core().available_devices
    except Exception as exc:
        return False, f"OpenVINO failed to start: {exc.__class__.__name__}"
    name = DEVICES[device]
    if name == "AUTO" or name in available:
        return True, ""
    return False, f"no OpenVINO {name} device here (available: {', '.join(available)})"
