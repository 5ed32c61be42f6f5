"""ONNX Runtime decoder: CPU, CUDA or TensorRT execution provider (no torch)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from edgecodec.errors import RuntimeUnavailable

from .base import RuntimeInfo
from .bundled import BundleDecoder

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def provider_chain(device: str, cache_dir: Path, precision: str) -> list:
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})  # EXHAUSTIVE = slow first run
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if device == "tensorrt":
        trt = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
               "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir),
               "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"}
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]
    raise RuntimeUnavailable(f"unknown ONNX Runtime device '{device}'")


class OrtDecoder(BundleDecoder):
    def __init__(self, bundle, device: str = "cpu", threads: int | None = None, sizes=None):
        import onnxruntime as ort

        self.ort, self.device, self.threads = ort, device, threads
        self.cache_dir = Path(os.environ.get("EDGECODEC_CACHE", Path.home() / ".cache" / "edgecodec")) / "ort"
        super().__init__(bundle, sizes)
        self.name = f"onnxruntime-{device}"

    def load_graph(self, graph: dict) -> bytes:
        if "onnx" not in graph["files"]:
            raise RuntimeUnavailable(f"bundle {self.bundle.root} has no ONNX graph (export with --format onnx)")
        return self.bundle.path(graph["files"]["onnx"]).read_bytes()

    def compile_graph(self, model: bytes, graph: dict):
        opts = self.ort.SessionOptions()
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        if self.device == "tensorrt":
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        precision = graph.get("precision", self.bundle.precision)
        session = self.ort.InferenceSession(model, sess_options=opts,
                                            providers=provider_chain(self.device, self.cache_dir, precision))
        wanted = PROVIDERS[self.device]
        if session.get_providers()[0] != wanted:
            # onnxruntime-gpu silently falls back to CPU: refuse rather than mislabel the result
            raise RuntimeUnavailable(f"ONNX Runtime could not start {wanted} here "
                                     f"(session runs on {session.get_providers()[0]})")
        return session

    def infer(self, session, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, feeds)[0]

    @property
    def info(self) -> RuntimeInfo:
        session = next(iter(self._graphs.values()))
        providers = session.get_providers()
        device = "cpu" if providers[0] == "CPUExecutionProvider" else "cuda:0"
        return RuntimeInfo(self.name, device, self.bundle.precision, providers,
                           {"onnxruntime": self.ort.__version__, "threads": self.threads or "default",
                            "bundle": str(self.bundle.root)})


_probe_cache: dict[str, tuple[bool, str]] = {}


def probe(device: str) -> tuple[bool, str]:
    """Whether a session really runs on this provider (available_providers lists CUDA and TensorRT
    even on machines without a GPU), tried on a one-node model."""
    if device in _probe_cache:
        return _probe_cache[device]
    if device == "cpu":
        return True, ""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        node = helper.make_node("Relu", ["x"], ["y"])
        g = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        wanted = PROVIDERS[device]
        if wanted not in ort.get_available_providers():
            result = (False, f"this onnxruntime build has no {wanted}")
        else:
            so = ort.SessionOptions()
            so.log_severity_level = 4
            ort.set_default_logger_severity(4)  # a failed provider load logs errors we report ourselves
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                s = ort.InferenceSession(model.SerializeToString(), so, providers=[wanted, "CPUExecutionProvider"])
            ort.set_default_logger_severity(2)
            ok = s.get_providers()[0] == wanted
            result = (ok, "" if ok else f"{wanted} is in the wheel but cannot start here (no GPU or CUDA libraries)")
    except Exception as exc:  # a broken CUDA install raises many kinds
        result = (False, f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:120]}")
    _probe_cache[device] = result
    return result
