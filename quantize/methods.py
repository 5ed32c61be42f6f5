"""Quantization methods, registered by name with typed options: `edgecodec quantize --method`, its
flags and the pipeline recipe's keys are all read from METHODS.

A method is either a graph method (`graph`: quantizes one exported FP32 ONNX graph for one target
format: fn(onnx_model, calibration_sets, target, overflow, float_layers, **own_options) -> (model, Scheme,
log); PTQ, accuracy-controlled PTQ) or a model method (`model`: quantizes the torch decoder and
exports it: fn(loaded, writer, tmp, sizes, sets, options, say) -> (graphs, manifest section); QAT). Adding one is a function in its own module plus a row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgecodec.errors import EdgecodecError


@dataclass(frozen=True)
class Option:
    name: str  # the recipe key; the CLI flag is --name-with-dashes
    type: type
    default: object
    help: str
    minimum: float | None = None
    pipeline_default: object = None  # the pipeline's (smaller, faster) default, when it differs

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    kind: str  # "graph" or "model"
    entry: str  # "module:function", imported when the method runs
    options: tuple[Option, ...] = ()

    def function(self):
        module, func = self.entry.split(":")
        return getattr(importlib.import_module(module), func)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ptq", "post-training quantization: MinMax ranges from the calibration items, fast bias correction",
           "graph", "edgecodec.quantize.ptq:graph_method"),
    Method("accuracy", "PTQ that reverts the most harmful layers to float until the PSNR drop against FP32 is "
                       "within --max-drop", "graph", "edgecodec.quantize.accuracy:graph_method",
           (Option("max_drop", float, 0.5, "accuracy method: largest PSNR drop vs the FP32 decoder, dB (default 0.5)",
                   minimum=0.0, pipeline_default=0.1),
            Option("max_iterations", int, 0, "accuracy method: cap on revert iterations (default 0: NNCF's own)",
                   minimum=0))),
    Method("qat", "PTQ then distillation fine-tuning of the quantized torch decoder (teacher: the FP32 decoder)",
           "model", "edgecodec.quantize.qat:run_method",
           (Option("qat_steps", int, 100, "qat method: fine-tuning steps (default 100)", minimum=0,
                   pipeline_default=20),
            Option("qat_lr", float, 1e-6, "qat method: peak learning rate, cosine-decayed (default 1e-6)",
                   minimum=0.0),
            Option("qat_batch", int, 4, "qat method: items per step (default 4)", minimum=1))),
)}


def all_options() -> dict[str, Option]:
    return {o.name: o for m in METHODS.values() for o in m.options}


def check_method(name: str) -> Method:
    if name not in METHODS:
        raise EdgecodecError(f"unknown method {name}: choose from {', '.join(METHODS)}")
    return METHODS[name]


def method_options(values: dict, pipeline: bool = False) -> dict:
    """Every method option with its default, overridden and type-checked by `values`."""
    opts = all_options()
    unknown = sorted(set(values) - set(opts))
    if unknown:
        raise EdgecodecError(f"unknown quantization option '{unknown[0]}' (known: {', '.join(opts)})")
    out = {}
    for name, o in opts.items():
        default = o.pipeline_default if pipeline and o.pipeline_default is not None else o.default
        value = values.get(name, default)
        if o.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, o.type) or isinstance(value, bool):
            raise EdgecodecError(f"'{name}' should be {o.type.__name__}, got {value!r}")
        if o.minimum is not None and value < o.minimum:
            raise EdgecodecError(f"{o.flag} must be >= {o.minimum:g}, got {value}")
        out[name] = value
    return out


__all__ = ["METHODS", "Method", "Option", "all_options", "check_method", "method_options"]
