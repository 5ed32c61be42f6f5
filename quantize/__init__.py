"""edgecodec.quantize: INT8 decoders with NNCF.

calibration (real streams), scheme (what stays float and why, presets, overflow fix), ptq and
accuracy (NNCF on the exported ONNX graph), qat (NNCF torch + distillation), qdq (graph checks),
bundle (the INT8 bundle) and cli (`edgecodec quantize`). Nothing here imports torch or NNCF at
import time; the submodules that need them are imported when used.
"""

__all__ = ["accuracy", "bundle", "calibration", "cli", "ptq", "qat", "qdq", "scheme"]
