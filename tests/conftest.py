import os
import sys

import numpy as np
import pytest

# Tests run on 2 cores next to other work: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo (scikit-learn ships it), cropped small and to a size that needs padding."""
    from edgecodec.imageio import sample_images

    return np.ascontiguousarray(sample_images()["china"][100:300, 150:410])  # 200 x 260


@pytest.fixture(scope="session")
def tiny():
    from edgecodec.weights import load_model

    return load_model("tiny", quiet=True)


@pytest.fixture(scope="session")
def tiny_decoder(tiny):
    from edgecodec.runtimes import create_decoder

    return create_decoder("torch-cpu", model=tiny)


def run_cli(*args: str, env: dict | None = None):
    """Run `edgecodec ARGS` in a fresh process."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "edgecodec.apps.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="session")
def tiny_bundle(tiny, tmp_path_factory):
    """`tiny` exported at 128x192 to ONNX and OpenVINO, FP32 (tests must copy it before changing it)."""
    from edgecodec.export.exporter import export_bundle

    out = tmp_path_factory.mktemp("export") / "bundle"
    return export_bundle(tiny, str(out), ["onnx", "openvino"], "fp32", [(128, 192)], parity_images=1)
