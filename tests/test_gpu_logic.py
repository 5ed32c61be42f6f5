"""The GPU runtimes' logic, run on the CPU: provider options, cache directories, IO binding, the
refusal of a silent CPU fallback, OpenVINO's f32 fallback, torch-compiled, and the device check
(which runs for real under `pytest -m gpu` on a machine with a GPU, and skips with its reason here)."""

import json

import numpy as np
import pytest

from edgecodec.errors import RuntimeUnavailable


def test_provider_options_for_each_gpu_device(tmp_path):
    from edgecodec.runtimes.onnxruntime_backend import provider_chain

    assert provider_chain("cpu", tmp_path, "fp32") == ["CPUExecutionProvider"]
    (name, cuda), cpu = provider_chain("cuda", tmp_path, "fp32")
    assert name == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
    assert cuda == {"cudnn_conv_algo_search": "EXHAUSTIVE", "enable_cuda_graph": "1"}
    assert provider_chain("cuda", tmp_path, "fp32", cuda_graph=False)[0][1]["enable_cuda_graph"] == "0"
    for precision, fp16, int8 in (("fp32", False, False), ("fp16", True, False), ("int8", False, True)):
        (name, trt), (_, cuda), _ = provider_chain("tensorrt", tmp_path, precision)
        assert name == "TensorrtExecutionProvider"
        assert (trt["trt_fp16_enable"], trt["trt_int8_enable"]) == (fp16, int8)
        assert trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"] and trt["trt_cuda_graph_enable"]
        assert trt["trt_engine_cache_path"] == str(tmp_path / "engines")
        assert cuda["enable_cuda_graph"] == "0"  # TensorRT captures the graph; its CUDA fallback must not


@pytest.mark.parametrize("device,provider", [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")])
def test_gpu_providers_refuse_rather_than_fall_back(tiny_bundle, tmp_path, monkeypatch, device, provider):
    from edgecodec.runtimes import probe
    from edgecodec.runtimes.onnxruntime_backend import OrtDecoder

    if probe(f"onnxruntime-{device}")[0]:
        pytest.skip(f"{provider} really runs here")
    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match=provider):
        OrtDecoder(tiny_bundle.root, device=device)
    if device == "tensorrt":  # caches are made before the session, where TensorRT expects them
        assert (tmp_path / "ort" / "engines").is_dir() and (tmp_path / "ort" / "timing").is_dir()


def test_io_binding_gives_the_plain_sessions_pixels(tiny_bundle, tiny, photo):
    """IO binding (what CUDA graphs replay through) on the CPU provider: same output, buffers reused."""
    from edgecodec.coding import encode_image
    from edgecodec.runtimes.onnxruntime_backend import Bound, OrtDecoder

    rgb = np.ascontiguousarray(photo[:128, :192])
    plain, bound = OrtDecoder(tiny_bundle.root), OrtDecoder(tiny_bundle.root, io_binding=True)
    assert isinstance(next(iter(bound._graphs.values())), Bound) and bound.info.details["io_binding"]
    for rate in (0, 3):  # the second run refreshes the bound buffers in place
        data = encode_image(tiny.codec, rgb, rate)
        assert np.array_equal(plain.decode(data), bound.decode(data))
    assert np.array_equal(bound.encode_pixels(np.zeros((1, 3, 128, 192), np.float32)),
                          plain.encode_pixels(np.zeros((1, 3, 128, 192), np.float32)))


def test_openvino_falls_back_to_f32_when_reduced_precision_overflows(tiny_bundle, tiny, photo, monkeypatch):
    """A graph compiled in the device's reduced precision whose output is not finite is compiled
    again in f32 and rerun; info lists it. Overflow is simulated: this CPU computes in f32."""
    from edgecodec.coding import encode_image
    from edgecodec.runtimes.openvino_backend import OvDecoder

    data = encode_image(tiny.codec, np.ascontiguousarray(photo[:128, :192]), 2)
    expected = OvDecoder(tiny_bundle.root).decode(data)
    real_run = OvDecoder.run

    def overflowing(self, c, feeds):
        out = real_run(self, c, feeds)
        return out if c.hint == "f32" else np.full_like(out, np.inf)

    monkeypatch.setattr(OvDecoder, "run", overflowing)
    dec = OvDecoder(tiny_bundle.root, inference_precision="f16")
    assert next(iter(dec._graphs.values())).hint == "f16"
    assert np.array_equal(dec.decode(data), expected)
    assert dec.info.details["f32_fallbacks"] == [[128, 192]] and dec.info.details["inference_precision"] == "f32"
    dec.decode(data)
    assert len(dec.f32_fallbacks) == 1  # recompiled once, f32 from then on


def test_openvino_precision_policy(tiny_bundle):
    from edgecodec.runtimes.openvino_backend import OvDecoder

    dec = OvDecoder(tiny_bundle.root)
    assert dec.precision_hint({"precision": "fp32"}) == "f32"
    assert dec.precision_hint({"precision": "fp16"}) is None  # the device's own reduced precision, guarded
    assert dec.precision_hint({"precision": "int8"}) == "f32"  # on CPU: no silent bf16
    dec.device = "GPU"
    assert dec.precision_hint({"precision": "int8"}) is None


def test_torch_compiled_matches_eager_and_reports_its_compile(tmp_path, monkeypatch, photo):
    """tiny-edge (small: compiles in seconds) through torch.compile on this CPU."""
    from edgecodec.coding import encode_with
    from edgecodec.metrics import psnr
    from edgecodec.runtimes import create_decoder

    rgb = np.ascontiguousarray(photo[:128, :192])
    eager = create_decoder("torch-cpu", model="tiny-edge")
    compiled = create_decoder("torch-compiled", model="tiny-edge")
    data = [encode_with(eager, rgb, rate) for rate in (0, 3)]
    for d in data:  # one compiled graph serves every rate
        assert psnr(eager.decode(d), compiled.decode(d)) >= 50
    info = compiled.info
    assert info.backend == "torch-compiled" and info.device == "cpu" and info.precision == "fp32"
    assert [c["pixels"] for c in info.details["compiled"]] == [[128, 192]] and compiled.jit_compile_ms > 0
    assert info.details["compile_cache"].endswith("inductor") and info.details["group_norm"].startswith("eager")
    with pytest.raises(RuntimeUnavailable, match="CUDA only"):
        create_decoder("torch-compiled", model="tiny-edge", dtype="fp16")


def test_device_check_skips_with_every_reason_here(tmp_path):
    from edgecodec.benchmarks import device_check

    runtimes = device_check.gpu_runtimes()
    if any(ok for ok, _ in runtimes.values()):
        pytest.skip("a GPU runtime is usable here: tests/test_gpu_logic.py::test_device_check runs the check")
    assert device_check.main(["--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "device_check.json").read_text())
    assert summary["status"] == "skipped"
    assert set(summary["runtimes"]) == {"onnxruntime-tensorrt", "onnxruntime-cuda", "openvino-gpu", "torch-cuda",
                                        "torch-compiled"}
    assert all(r["reason"] for r in summary["runtimes"].values())


@pytest.mark.gpu
def test_device_check(tmp_path):
    from edgecodec.benchmarks import device_check

    if not any(ok for ok, _ in device_check.gpu_runtimes().values()):
        pytest.skip("no GPU runtime is usable here (python -m edgecodec.benchmarks.device_check says why)")
    rc = device_check.main(["--out", str(tmp_path)])
    summary = json.loads((tmp_path / "device_check.json").read_text())
    assert rc == 0 and summary["status"] == "passed", summary["checks"]
