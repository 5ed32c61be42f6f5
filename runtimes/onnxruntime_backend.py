"""ONNX Runtime decoder: CPU, CUDA or TensorRT execution provider (no torch)."""

from __future__ import annotations

import contextlib
import io
import tempfile
import threading
from pathlib import Path

import numpy as np

from edgecodec.errors import RuntimeUnavailable
from edgecodec.cache import cache_root

from .base import RuntimeInfo
from .bundled import BundleDecoder

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
FINGERPRINT_KEY = "edgecodec.fingerprint"  # graph metadata written at export (export.onnx_export.stamp)
DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}
# what an optimised graph runs convolutions and matmuls as when they are not integer kernels
FLOAT_KERNELS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm")


def provider_chain(device: str, cache_dir: Path, precision: str, cuda_graph: bool = True,
                   conv_algo_search: str = "EXHAUSTIVE") -> list:
    """Providers and their options. CUDA: cuDNN tries every convolution algorithm once (EXHAUSTIVE:
    a slower first run, the fastest kernels after) and replays a captured CUDA graph per session
    (fixed shapes, IO binding). TensorRT: FP16 for fp16 bundles; an int8 bundle is the explicit
    Q/DQ graph `quantize` checks for TensorRT, built as an INT8 engine; engines and kernel timings
    are cached, as building them takes minutes on a Jetson."""
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": conv_algo_search,
                                      "enable_cuda_graph": "1" if cuda_graph and device == "cuda" else "0"})
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if device == "tensorrt":
        trt = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir / "engines"),
               "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir / "timing"),
               "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8",
               "trt_cuda_graph_enable": cuda_graph}
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]
    raise RuntimeUnavailable(f"unknown ONNX Runtime device '{device}'")


class Bound:
    """A session run through IO binding: inputs and output live in fixed buffers on the device,
    refreshed in place each run — what CUDA-graph replay needs, and no per-run allocation. Shared
    buffers: one run at a time (a lock), where plain sessions run threads concurrently."""

    def __init__(self, ort, session, device: str):
        self.ort, self.session, self.device = ort, session, device
        self.binding = session.io_binding()
        self.inputs: dict[str, object] = {}
        out = session.get_outputs()[0]
        self.output = ort.OrtValue.ortvalue_from_shape_and_type(out.shape, DTYPES[out.type], device, 0)
        self.binding.bind_ortvalue_output(out.name, self.output)
        self.lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        for name, value in feeds.items():
            value = np.ascontiguousarray(value)
            held = self.inputs.get(name)
            if held is None:
                held = self.inputs[name] = self.ort.OrtValue.ortvalue_from_numpy(value, self.device, 0)
                self.binding.bind_ortvalue_input(name, held)
            else:
                held.update_inplace(value)
        self.session.run_with_iobinding(self.binding)
        return self.output.numpy()


class OrtDecoder(BundleDecoder):
    """Options: `threads` (CPU), `io_binding` (always on GPUs), `cuda_graph` (GPUs, default on;
    dropped with a note in `info` where the graph does not run wholly on the GPU), and
    `conv_algo_search` (cuDNN: EXHAUSTIVE, HEURISTIC or DEFAULT)."""

    def __init__(self, bundle, device: str = "cpu", threads: int | None = None, sizes=None,
                 io_binding: bool | None = None, cuda_graph: bool = True, conv_algo_search: str = "EXHAUSTIVE"):
        import onnxruntime as ort

        self.ort, self.device, self.threads = ort, device, threads
        self.io_binding = device != "cpu" if io_binding is None else io_binding
        self.cuda_graph, self.conv_algo_search = cuda_graph and device != "cpu", conv_algo_search
        self.notes: list[str] = []
        self.kernels: dict[str, dict] = {}  # INT8 graphs on the CPU: size -> int8_kernels()
        self.cache_dir = cache_root() / "ort"
        super().__init__(bundle, sizes)
        self.name = f"onnxruntime-{device}"

    def load_graph(self, graph: dict) -> bytes:
        if "onnx" not in graph["files"]:
            raise RuntimeUnavailable(f"bundle {self.bundle.root} has no ONNX graph (export with --format onnx)")
        return self.bundle.path(graph["files"]["onnx"]).read_bytes()

    def _session(self, model: bytes, precision: str, cuda_graph: bool, optimized_path: str | None = None):
        opts = self.ort.SessionOptions()
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        if optimized_path:  # read back for int8_kernels; ORT warns that such a file is machine-specific
            opts.optimized_model_filepath = optimized_path
            opts.log_severity_level = 3
        providers = provider_chain(self.device, self.cache_dir, precision, cuda_graph, self.conv_algo_search)
        return self.ort.InferenceSession(model, sess_options=opts, providers=providers)

    @staticmethod
    def int8_kernels(optimized_path: str) -> dict:
        """What the CPU provider made of an INT8 graph, read off the optimised graph its session wrote: the
        convolutions and matmuls it runs as integer kernels (QLinearConv, ...) and those left float behind a
        DequantizeLinear."""
        from collections import Counter

        import onnx

        ops = Counter(n.op_type for n in onnx.load(optimized_path).graph.node)
        integer = {k: v for k, v in sorted(ops.items()) if k.startswith("QLinear") or k.endswith("Integer")}
        return {"integer": integer, "float_conv_matmul": sum(ops[k] for k in FLOAT_KERNELS)}

    def compile_graph(self, model: bytes, graph: dict):
        if self.device == "tensorrt":
            for sub in ("engines", "timing"):
                (self.cache_dir / sub).mkdir(parents=True, exist_ok=True)
        precision = graph.get("precision", self.bundle.precision)
        if precision == "int8" and self.device == "cpu":  # the session writes the graph it optimised
            with tempfile.TemporaryDirectory(prefix="edgecodec-ort-") as tmp:
                path = str(Path(tmp) / "optimized.onnx")
                session = self._session(model, precision, False, optimized_path=path)
                self.kernels[f"{graph['size'][0]}x{graph['size'][1]}"] = self.int8_kernels(path)
        else:
            try:
                session = self._session(model, precision, self.cuda_graph)
            except Exception as exc:  # noqa: BLE001 - ORT raises plain RuntimeError/Fail for both causes
                if not self.cuda_graph or "graph" not in str(exc).lower():
                    raise
                # CUDA graphs need every node on the GPU; run without capture rather than not at all
                self.notes.append(f"CUDA graph off: {str(exc).splitlines()[0][:160]}")
                session = self._session(model, precision, False)
        wanted = PROVIDERS[self.device]
        if session.get_providers()[0] != wanted:
            # onnxruntime-gpu silently falls back to CPU: refuse rather than mislabel the result
            raise RuntimeUnavailable(f"ONNX Runtime could not start {wanted} here "
                                     f"(session runs on {session.get_providers()[0]})")
        return Bound(self.ort, session, "cuda" if self.device != "cpu" else "cpu") if self.io_binding else session

    def io_shapes(self, compiled) -> dict[str, list[int]]:
        session = compiled.session if isinstance(compiled, Bound) else compiled
        return {v.name: list(v.shape) for v in [*session.get_inputs(), *session.get_outputs()]}

    def stamped_fingerprint(self, compiled) -> str | None:
        session = compiled.session if isinstance(compiled, Bound) else compiled
        return session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)

    def infer(self, compiled, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(compiled, Bound):
            return compiled.run(feeds)
        return compiled.run(None, feeds)[0]

    @property
    def info(self) -> RuntimeInfo:
        compiled = next(iter(self._graphs.values()))
        session = compiled.session if isinstance(compiled, Bound) else compiled
        providers = session.get_providers()
        options = session.get_provider_options().get(providers[0], {})
        device = "cpu" if providers[0] == "CPUExecutionProvider" else f"cuda:{options.get('device_id', 0)}"
        details = {"onnxruntime": self.ort.__version__, "threads": self.threads or "default",
                   "bundle": str(self.bundle.root), "io_binding": self.io_binding, "notes": self.notes}
        if self.device != "cpu":
            details["provider_options"] = options
        if self.kernels:
            details["int8_kernels"] = self.kernels
        return RuntimeInfo(self.name, device, self.bundle.precision, providers, details)


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
