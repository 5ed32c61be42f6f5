"""OpenVINO decoder: CPU, Intel GPU or AUTO (no torch). LATENCY hint and a model cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecodec.errors import RuntimeUnavailable

from .base import RuntimeInfo
from .bundled import BundleDecoder

DEVICES = {"cpu": "CPU", "gpu": "GPU", "auto": "AUTO"}


class OvDecoder(BundleDecoder):
    def __init__(self, bundle, device: str = "cpu", threads: int | None = None, sizes=None):
        import openvino as ov

        self.ov, self.device = ov, DEVICES[device]
        self.core = ov.Core()
        cache = Path(os.environ.get("EDGECODEC_CACHE", Path.home() / ".cache" / "edgecodec")) / "openvino"
        cache.mkdir(parents=True, exist_ok=True)
        self.core.set_property({"CACHE_DIR": str(cache)})  # GPU kernels compile in seconds to minutes
        self.threads = threads
        if self.device != "AUTO" and self.device not in self.core.available_devices:
            raise RuntimeUnavailable(f"OpenVINO device {self.device} is not available here "
                                     f"(available: {', '.join(self.core.available_devices)})")
        super().__init__(bundle, sizes)
        self.name = f"openvino-{device}"

    def load_graph(self, graph: dict):
        if "openvino" not in graph["files"]:
            raise RuntimeUnavailable(f"bundle {self.bundle.root} has no OpenVINO IR (export with --format openvino)")
        return self.core.read_model(str(self.bundle.path(graph["files"]["openvino"])))

    def compile_graph(self, model, graph: dict):
        config = {"PERFORMANCE_HINT": "LATENCY"}
        # The CPU plugin silently computes in bf16 on CPUs with AMX/AVX512-BF16 (seen here: errors
        # of 0.1 on the [0, 1] image). An fp32 or int8 bundle asks for f32; an fp16 bundle takes
        # the device's own reduced precision (f16 on GPU, bf16 where the CPU has it).
        if graph.get("precision", self.bundle.precision) in ("fp32", "int8") and self.device != "AUTO":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if self.threads and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        compiled = self.core.compile_model(model, self.device, config)
        return compiled.create_infer_request(), compiled

    def infer(self, compiled, feeds: dict[str, np.ndarray]) -> np.ndarray:
        request, _ = compiled
        request.infer(feeds)
        return request.get_output_tensor(0).data.copy()

    @property
    def info(self) -> RuntimeInfo:
        _, compiled = next(iter(self._graphs.values()))
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
                            "device_names": names, "bundle": str(self.bundle.root)})


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
