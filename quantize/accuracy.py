"""Accuracy-controlled PTQ: `nncf.quantize_with_accuracy_control` on the ONNX decode graph, with a codec
metric.

The metric is the mean PSNR of the decoded image against the ORIGINAL image (not against the FP32
decoder), over the validation items, each decoded by ONNX Runtime on the CPU from the candidate
graph. NNCF quantizes with the scheme (scheme.py), measures the FP32 and INT8 metric, and if the
INT8 graph is more than `max_drop` dB (DropType.ABSOLUTE) below the FP32 one, ranks the quantized
layers by how much reverting each one recovers (per-item PSNR) and reverts the most harmful to float
until the drop is within `max_drop`.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .calibration import CalibItem, cases
from .ptq import finish_onnx, nncf_dataset, onnx_scheme, quantized_nodes


def psnr_validation(model, items) -> tuple[float, list[float]]:
    """NNCF validation_fn: (mean PSNR vs originals, per-item PSNR) of an ONNX model, ONNX Runtime CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    from edgecodec.harness import compare

    values = [r["psnr"] for r in compare(cases(items), lambda c: session.run(["image"], c.inputs.feeds())[0])]
    return float(np.mean(values)), values


class _Capture(logging.Handler):
    """Keeps NNCF's own account of what the accuracy-aware loop did (drops, reverted layers)."""

    KEYS = ("accuracy drop", "metric", "reverted", "algorithm completed", "number of quantized",
            "could not achieve", "maximum number")

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if any(k in msg.lower() for k in self.KEYS):
            self.lines.extend(line for line in msg.splitlines() if line.strip())


def graph_method(model, sets, target: str, overflow: str, float_layers: dict, max_drop: float,
                 max_iterations: int):
    """The `accuracy` row of methods.METHODS (max_iterations 0: NNCF's own limit)."""
    return quantize_with_accuracy_control(model, sets.calibration, sets.validation, target, max_drop, overflow,
                                          max_iterations or None, float_layers=float_layers)


def quantize_with_accuracy_control(model, calibration: list[CalibItem], validation: list[CalibItem], target: str,
                                   max_drop: float, overflow: str = "auto", max_iterations: int | None = None,
                                   validation_fn=psnr_validation, float_layers: dict | None = None):
    """FP32 ModelProto -> (INT8 ModelProto, Scheme, log with the metric before/after and what was reverted).

    `validation_fn(model, items) -> (metric, per-item values)` is the codec metric (psnr_validation);
    another can be passed to study the algorithm."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    scheme = onnx_scheme(model, target, overflow, float_layers)
    restorer = AdvancedAccuracyRestorerParameters(num_ranking_workers=1)  # share the CPU politely
    if max_iterations is not None:
        restorer.max_num_iterations = max_iterations
    capture = _Capture()
    logger = logging.getLogger("nncf")
    logger.addHandler(capture)
    t0 = time.perf_counter()
    try:
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf_dataset(calibration), nncf.Dataset(validation), validation_fn,
            max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration),
            fast_bias_correction=True, advanced_quantization_parameters=scheme.advanced_parameters(),
            advanced_accuracy_restorer_parameters=restorer, **scheme.nncf_kwargs())
    finally:
        logger.removeHandler(capture)
    seconds = time.perf_counter() - t0
    quantized = finish_onnx(quantized, target)
    fp32_metric, _ = validation_fn(model, validation)
    int8_metric, _ = validation_fn(quantized, validation)
    planned = {o.name for o in scheme.quantized}
    kept = quantized_nodes(quantized)
    reverted = sorted(planned - kept)
    by_name = {o.name: o for o in scheme.ops}
    log = {
        "algorithm": "nncf.quantize_with_accuracy_control (ONNX backend), drop_type ABSOLUTE",
        "metric": "mean PSNR (dB) of the decoded image vs the original, ONNX Runtime CPU",
        "max_drop_db": max_drop,
        "validation_items": len(validation),
        "fp32_metric_db": fp32_metric,
        "int8_metric_db": int8_metric,
        "drop_db": fp32_metric - int8_metric,
        "within_max_drop": fp32_metric - int8_metric <= max_drop + 1e-9,
        "quantized_layers_planned": len(planned),
        "reverted_to_float": [by_name[n].weight or n for n in reverted],
        "nncf_log": capture.lines[-40:],
        "seconds": round(seconds, 2),
    }
    return quantized, scheme, log


__all__ = ["graph_method", "psnr_validation", "quantize_with_accuracy_control"]
