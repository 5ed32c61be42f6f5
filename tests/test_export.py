"""Export to ONNX and OpenVINO IR, the bundle contract, and torch-free decoding."""

import json
import shutil
import os
import subprocess
import sys

import numpy as np
import pytest

from edgecodec.coding import encode_image
from edgecodec.errors import BundleError
from edgecodec.metrics import psnr

SIZE = (128, 192)


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    assert tuple(tiny_bundle.manifest["graphs"][0]["size"]) == SIZE
    return tiny_bundle


@pytest.fixture(scope="module")
def stream(tiny, photo):
    rgb = np.ascontiguousarray(photo[:SIZE[0], :SIZE[1] - 10])  # padded up to the graph size
    return rgb, encode_image(tiny.codec, rgb, 2)


def test_bundle_contents(bundle):
    import onnx

    from edgecodec.export.onnx_export import onnx_ops

    m = bundle.manifest
    assert m["precision"] == "fp32" and m["model"]["name"] == "tiny"
    g = m["graphs"][0]
    assert g["size"] == list(SIZE) and g["gflops"] > 0
    assert [i["name"] for i in g["inputs"]] == ["indices", "noise", "rate"]
    for name in g["files"].values():
        assert name in m["files"] and len(m["files"][name]["sha256"]) == 64
    onnx.checker.check_model(str(bundle.path(g["files"]["onnx"])), full_check=True)
    meta = {p.key: p.value for p in onnx.load(str(bundle.path(g["files"]["onnx"]))).metadata_props}
    assert meta == {"edgecodec.fingerprint": m["model"]["fingerprint"]}  # stamped for the load-time check
    assert all(op.startswith("ai.onnx::") for op in onnx_ops(bundle.path(g["files"]["onnx"])))
    parity = m["parity"]
    assert parity["passed"] and set(parity["worst"]) == {"onnxruntime-cpu", "openvino-cpu"}
    assert len(parity["results"]) == 2 * 4  # two runtimes x four rates on one photo
    for worst in parity["worst"].values():
        assert worst["max_abs"] <= parity["tolerance"]["max_abs"]


def test_runtimes_agree_on_a_real_photo(tiny, bundle, stream):
    """torch, ONNX Runtime and OpenVINO decode the same stream within the fp32 tolerance."""
    from edgecodec.export.parity import TOLERANCES
    from edgecodec.runtimes import create_decoder

    rgb, data = stream
    tol = TOLERANCES["fp32"]
    ref_dec = create_decoder("torch-cpu", model=tiny)
    ref = ref_dec.decode(data)
    parsed = ref_dec.parse(data)
    noise = ref_dec.noise_for(parsed)
    ref_float = ref_dec.run_graph(parsed.indices, noise, parsed.rate)
    for name in ("onnxruntime-cpu", "openvino-cpu"):
        dec = create_decoder(name, bundle=str(bundle.root))
        out = dec.decode(data)
        assert out.shape == rgb.shape
        assert psnr(ref, out) >= tol.min_psnr, name
        assert np.abs(dec.run_graph(parsed.indices, noise, parsed.rate) - ref_float).max() <= tol.max_abs
        assert np.array_equal(out, dec.decode(data)), f"{name} is not deterministic"
        info = dec.info
        assert info.precision == "fp32" and info.device.lower().startswith("cpu")
    assert create_decoder("onnxruntime-cpu", bundle=str(bundle.root)).info.providers == ["CPUExecutionProvider"]


def test_auto_prefers_a_compiled_runtime(bundle):
    from edgecodec.runtimes import pick_auto

    assert pick_auto(with_bundle=True) == "openvino-cpu"
    assert pick_auto(with_bundle=False) == "torch"


def test_stream_of_another_size_decodes_tile_by_tile(tiny, bundle, photo):
    """A 200x260 stream needs a 256x320 graph the bundle lacks: its 128x192 graph runs per tile."""
    from edgecodec.runtimes import create_decoder

    data = encode_image(tiny.codec, photo, 0)
    whole = create_decoder("torch-cpu", model=tiny).decode(data)
    outs = {}
    for name in ("onnxruntime-cpu", "openvino-cpu"):
        dec = create_decoder(name, bundle=str(bundle.root))
        assert dec.grid_for(16, 20).count == 6  # 3 x 2 tiles of 8 x 12 cells
        outs[name] = dec.decode(data)
        assert outs[name].shape == photo.shape
        assert np.array_equal(outs[name], dec.decode(data)), f"{name} tiled decode is not deterministic"
        # tiles of 8 x 12 cells (each with its own GroupNorm statistics) cost some quality (the 0.4
        # tiny: 23.4 dB against the whole-image decode here); at 512x512 tiles Kodak stays within
        # 0.2 dB of the whole-image decode (README "Any image size")
        assert abs(psnr(photo, outs[name]) - psnr(photo, whole)) < 1.5
        assert psnr(whole, outs[name]) > 21
    assert psnr(outs["onnxruntime-cpu"], outs["openvino-cpu"]) >= 50  # runtimes agree tile for tile


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle.root, dst)
    return dst


def test_tampered_bundle_is_refused(bundle, tmp_path):
    from edgecodec.bundle import open_bundle

    dst = _copy(bundle, tmp_path)
    weights = dst / bundle.manifest["graphs"][0]["files"]["openvino_weights"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="was modified"):
        open_bundle(dst)


def test_incomplete_bundle_is_refused(bundle, tmp_path):
    from edgecodec.bundle import open_bundle

    dst = _copy(bundle, tmp_path)
    (dst / bundle.manifest["graphs"][0]["files"]["onnx"]).unlink()
    with pytest.raises(BundleError, match="is missing"):
        open_bundle(dst)
    (dst / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(dst)


def test_manifest_for_another_model_is_refused(bundle, tmp_path):
    from edgecodec.bundle import open_bundle

    dst = _copy(bundle, tmp_path)
    m = json.loads((dst / "manifest.json").read_text())
    m["model"]["fingerprint"] = "00" * 8
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="does not match its checksum"):
        open_bundle(dst)
    from edgecodec.bundle import manifest_checksum

    m["checksum"] = manifest_checksum(m)  # consistent, but for another model
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="fingerprint"):
        open_bundle(dst)


def test_failed_export_leaves_nothing_that_looks_like_a_bundle(tiny, tmp_path, monkeypatch):
    import edgecodec.export.openvino_export as ove
    from edgecodec.export.exporter import export_bundle

    def boom(*a, **k):
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(ove, "export_openvino", boom)
    with pytest.raises(RuntimeError):
        export_bundle(tiny, str(tmp_path / "b"), ["onnx", "openvino"], "fp32", [SIZE], parity_images=1)
    assert list(tmp_path.iterdir()) == []


def test_decode_without_torch(bundle, stream, tmp_path):
    """The edge path: numpy + pillow + the runtime, with torch made unimportable."""
    rgb, data = stream
    (tmp_path / "s.edc").write_bytes(data)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nfor m in ('torch', 'nncf', 'safetensors', 'pytorch_msssim'):\n    sys.modules[m] = None\n")
    env = {**os.environ, "PYTHONPATH": str(blocker) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    outs = []
    for rt in ("onnxruntime-cpu", "openvino-cpu", "auto"):
        out = tmp_path / f"{rt}.png"
        res = subprocess.run([sys.executable, "-m", "edgecodec.apps.cli", "decode", str(tmp_path / "s.edc"), "-o", str(out),
                              "--runtime", rt, "--bundle", str(bundle.root)], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        from edgecodec.imageio import load_image

        outs.append(load_image(out))
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, env=env)
    assert probe.returncode != 0, "the blocker did not block torch"
    assert all(o.shape == rgb.shape for o in outs)
    assert psnr(outs[0], outs[1]) >= 50


def test_export_cli_errors(capsys):
    from edgecodec.apps.cli import main

    assert main(["export", "--size", "100x100", "-o", "/tmp/never"]) == 2
    assert "not a positive multiple of 64" in capsys.readouterr().err
    assert main(["export", "--size", "64x64", "--format", "tflite", "-o", "/tmp/never"]) == 2
    assert "unknown format tflite" in capsys.readouterr().err


def test_a_bundle_without_encoder_says_so(bundle, photo, tmp_path, capsys):
    """Bundles made before the encode graph decode as before; encoding with them is refused in one line."""
    from edgecodec.apps.cli import main
    from edgecodec.imageio import save_png

    dst = tmp_path / "old"
    shutil.copytree(bundle.root, dst)
    m = json.loads((dst / "manifest.json").read_text())
    for g in m["graphs"]:
        del g["encoder"]
    del m["checksum"]  # nor a checksum (0.3)
    (dst / "manifest.json").write_text(json.dumps(m))
    save_png(tmp_path / "a.png", np.ascontiguousarray(photo[:SIZE[0], :SIZE[1]]))
    assert main(["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.edc"), "--bundle", str(dst),
                 "--runtime", "openvino-cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no encoder" in err[0] and "export it again" in err[0]
    assert not (tmp_path / "a.edc").exists()
