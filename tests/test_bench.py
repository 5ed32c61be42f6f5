"""The latency benchmark: synthetic inputs, statistics, runtime selection and the `bench` verb end to end
(torch-cpu on a hand-made manifest; the bundle runtimes need a real export)."""

import json

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.benchmarks.inputs import synthetic_stream
from edgecodec.benchmarks.report import CONTRACT_KEYS, build_report, to_markdown
from edgecodec.benchmarks.runner import resolve_runtimes
from edgecodec.apps.cli import main
from edgecodec.bundle import open_bundle
from edgecodec.benchmarks.stats import percentiles, stage_medians, summarize
from edgecodec.errors import BundleError, EdgecodecError

SIZE = (128, 192)


def bench(*argv: str) -> int:
    return main(["bench", *argv])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def _manifest(spec, gflops=1.25) -> dict:
    return {"format": "edgecodec-bundle", "format_version": 1,
            "model": {"name": spec.model, "source": "random(seed=0)", "fingerprint": spec.fingerprint.hex()},
            "precision": "fp32", "stream_spec": spec.to_json(),
            "graphs": [{"size": list(SIZE), "gflops": gflops,
                        "files": {"onnx": "decoder_128x192.onnx", "openvino": "decoder_128x192.xml"}}],
            "files": {}}


@pytest.fixture(scope="module")
def spec():
    from edgecodec.weights import load_model

    return load_model("tiny", quiet=True).codec.stream_spec()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, spec):
    root = tmp_path_factory.mktemp("bundle")
    (root / "manifest.json").write_text(json.dumps(_manifest(spec)))
    return root


@pytest.fixture(scope="module")
def bench_run(bundle_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    json_path, md_path = out / "bench.json", out / "bench.md"
    rc = bench("--bundle", str(bundle_dir), "--runtime", "torch-cpu", "--runs", "3", "--warmup", "1",
               "--json", str(json_path), "--md", str(md_path))
    return rc, json.loads(json_path.read_text()), md_path.read_text()


# --- inputs and statistics -------------------------------------------------------------------

@pytest.mark.parametrize("height,width,rate", [(128, 192, 0), (100, 150, 3)])
def test_synthetic_stream_parses(spec, height, width, rate):
    data = synthetic_stream(spec, height, width, rate, seed=7)
    parsed = bitstream.parse(data, spec)
    h, w = spec.latent_size(height, width)
    assert (parsed.header.height, parsed.header.width, parsed.rate, parsed.header.seed) == (height, width, rate, 7)
    assert parsed.indices.shape == (1, rate + 1, h, w)
    assert parsed.indices.min() >= 0 and parsed.indices.max() < spec.codebook_size
    assert synthetic_stream(spec, height, width, rate, seed=7) == data  # PCG64: the same bytes everywhere
    assert synthetic_stream(spec, height, width, rate, seed=8) != data


def test_synthetic_stream_follows_the_prior(spec):
    parsed = bitstream.parse(synthetic_stream(spec, 512, 512, 0, seed=1), spec)
    never = spec.prior_counts[0] == 0
    assert not never[parsed.indices[0, 0].ravel()].any()  # codes the prior never saw are never drawn
    with pytest.raises(ValueError):
        synthetic_stream(spec, 64, 64, spec.num_rates, seed=0)


def test_percentiles_on_known_data():
    data = np.arange(1, 102, dtype=float)  # 1..101: the k-th percentile is exactly 1 + k
    assert percentiles(data) == {"p50": 51.0, "p90": 91.0, "p99": 100.0}
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s["mean"] == 2.5 and s["p50"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0 and s["n"] == 4
    assert s["p90"] == pytest.approx(3.7) and s["p99"] == pytest.approx(3.97)
    assert summarize([7.0])["p99"] == 7.0
    with pytest.raises(ValueError):
        summarize([])
    assert stage_medians([{"graph_ms": 1.0}, {"graph_ms": 3.0}, {"graph_ms": 2.0, "post_ms": 1.0}]) == \
        {"graph_ms": 2.0, "post_ms": 1.0}


# --- runtime selection and the report ------------------------------------------------------------

def test_all_means_usable_runtimes_that_read_the_bundle(spec):
    manifest = _manifest(spec)
    probe = lambda: {"onnxruntime-cpu": (True, ""), "openvino-cpu": (True, ""), "openvino-auto": (True, ""),
                     "onnxruntime-cuda": (False, "no GPU"), "torch-cpu": (True, ""), "torch": (True, "")}
    skipped = {}
    assert resolve_runtimes("all", manifest, probe=probe, skipped=skipped) == [
        "openvino-cpu", "onnxruntime-cpu", "torch-cpu"]
    assert skipped["onnxruntime-cuda"] == "no GPU" and "openvino-auto" in skipped and "torch" in skipped
    del manifest["graphs"][0]["files"]["openvino"]
    assert resolve_runtimes("all", manifest, probe=probe) == ["onnxruntime-cpu", "torch-cpu"]
    assert resolve_runtimes("onnxruntime-cpu", manifest, reference=False, probe=probe) == ["onnxruntime-cpu"]
    with pytest.raises(EdgecodecError, match="unknown runtime 'nope'"):
        resolve_runtimes("torch-cpu,nope", manifest, probe=probe)


def test_report_ratios_and_failures(spec):
    def entry(runtime, mean):
        return {"runtime": runtime, "precision": "fp32", "size": list(SIZE), "gflops": 2.0,
                "latency_ms": {"mean": mean, "p50": mean, "p90": mean, "p99": mean},
                "stages_ms": {"graph_ms": mean / 2}, "first_inference_ms": 1.0, "compile_ms": 1.0,
                "peak_rss_mb": 1.0, "actual_device": "cpu"}

    results = [entry("onnxruntime-cpu", 10.0), {"runtime": "openvino-gpu", "size": list(SIZE), "error": "no GPU"},
               entry("torch-cpu", 40.0)]
    report = build_report({"cpu": "x"}, {"bundle": "b", "runs": 1, "warmup": 0}, _manifest(spec), results)
    ort, ov, ref = report["results"]
    assert ort["speedup_vs_torch"] == 4.0 and ref["speedup_vs_torch"] == 1.0
    assert ort["gflops_per_s"] == pytest.approx(200.0) and ort["graph_gflops_per_s"] == pytest.approx(400.0)
    assert set(CONTRACT_KEYS) <= set(ov) and ov["latency_ms"] is None and ov["error"] == "no GPU"
    md = to_markdown(report)
    assert "| onnxruntime-cpu | fp32 | 128x192 |" in md and "4.00" in md and "openvino-gpu" in md


# --- the bench verb --------------------------------------------------------------------------------

def test_bench_torch_reference_end_to_end(bench_run):
    rc, report, md = bench_run
    assert rc == 0
    m = report["machine"]
    assert isinstance(m["cpu"], str) and m["cpu"] and m["logical_cores"] >= 1 and m["memory_gb"] > 0
    assert {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx"} <= set(m["isa"]) or m["arch"] != "x86_64"
    assert m["versions"]["numpy"] and m["versions"]["torch"] and isinstance(m["gpus"], list)
    assert m["python"] and m["os"]
    (r,) = report["results"]
    assert "error" not in r
    assert set(CONTRACT_KEYS) <= set(r)
    assert r["runtime"] == "torch-cpu" and r["precision"] == "fp32" and r["size"] == list(SIZE)
    lat = r["latency_ms"]
    assert all(isinstance(lat[k], float) and lat[k] > 0 for k in ("mean", "p50", "p90", "p99"))
    assert lat["p50"] <= lat["p90"] <= lat["p99"] and r["runs"] == 3 and len(r["samples_ms"]) == 3
    for key in ("first_inference_ms", "compile_ms", "peak_rss_mb", "gflops", "gflops_per_s"):
        assert isinstance(r[key], float) and r[key] > 0, key
    assert r["gflops"] == 1.25 and r["gflops_per_s"] == pytest.approx(1.25 / (lat["mean"] / 1e3))
    assert set(r["stages_ms"]) == {"parse_ms", "noise_ms", "graph_ms", "post_ms"}
    assert all(v >= 0 for v in r["stages_ms"].values()) and r["stages_ms"]["graph_ms"] > 0
    assert isinstance(r["actual_device"], str) and r["actual_device"].startswith("cpu")
    assert r["speedup_vs_torch"] == 1.0
    assert "| runtime | precision | size | mean ms | p50 ms | p90 ms | p99 ms |" in md
    assert "| torch-cpu | fp32 | 128x192 |" in md and "**Machine:**" in md and m["cpu"] in md


def test_bench_failing_runtime_is_an_entry_not_an_abort(bundle_dir, tmp_path, capsys):
    # the hand-made manifest names an ONNX graph it does not have: the worker fails, the bench reports it
    out = tmp_path / "b.json"
    rc = bench("--bundle", str(bundle_dir), "--runtime", "onnxruntime-cpu", "--no-reference", "--runs", "1",
               "--warmup", "0", "--json", str(out))
    assert rc == 1  # nothing ran
    (r,) = json.loads(out.read_text())["results"]
    assert r["runtime"] == "onnxruntime-cpu" and r["error"] and "\n" not in r["error"]
    assert r["latency_ms"] is None and r["size"] == list(SIZE)


def test_bench_unknown_runtime_is_one_line(bundle_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = bench("--bundle", str(bundle_dir), "--runtime", "torch-cpu,warp-drive", "--json", str(out))
    assert rc != 0 and not out.exists()
    assert "unknown runtime 'warp-drive'" in _one_line_error(capsys)


def test_bench_missing_manifest_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for bundle in (tmp_path / "empty", tmp_path / "absent"):
        rc = bench("--bundle", str(bundle), "--runtime", "torch-cpu", "--json", str(tmp_path / "b.json"))
        assert rc != 0
        assert "bundle" in _one_line_error(capsys)
    with pytest.raises(BundleError):
        open_bundle(tmp_path / "empty")


def test_bench_refuses_bundles_of_two_models(bundle_dir, spec, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    manifest = _manifest(spec)
    manifest["model"]["fingerprint"] = manifest["stream_spec"]["fingerprint"] = "00" * 8  # a consistent other model
    (other / "manifest.json").write_text(json.dumps(manifest))
    rc = bench("--bundle", f"{bundle_dir},{other}", "--runtime", "torch-cpu", "--json", str(tmp_path / "b.json"))
    assert rc != 0 and not (tmp_path / "b.json").exists()
    assert "reads other streams" in _one_line_error(capsys)


def test_speedup_vs_fp32_pairs_runtime_and_size(spec):
    def result(runtime, precision, mean):
        return {"runtime": runtime, "precision": precision, "bundle_precision": precision, "size": list(SIZE),
                "latency_ms": {"mean": mean, "p50": mean, "p90": mean, "p99": mean}}

    results = [result("openvino-cpu", "fp32", 120.0), result("openvino-cpu", "int8", 80.0),
               result("onnxruntime-cpu", "int8", 240.0), result("torch-cpu", "fp32", 200.0)]
    report = build_report({"cpu": "x"}, {"bundle": "b", "runs": 1, "warmup": 0}, [_manifest(spec)] * 2, results,
                          paths=["fp32", "int8"])
    by = {(r["runtime"], r["precision"]): r for r in report["results"]}
    assert by["openvino-cpu", "int8"]["speedup_vs_fp32"] == pytest.approx(1.5)
    assert by["openvino-cpu", "int8"]["speedup_vs_torch"] == pytest.approx(2.5)
    assert "speedup_vs_fp32" not in by["onnxruntime-cpu", "int8"]  # no FP32 run of that runtime to pair with
    assert len(report["bundles"]) == 2 and report["bundle"] == report["bundles"][0]

    # two FP32 bundles of one model: the first listed is every ratio's baseline, whatever the order of runs
    results.insert(2, result("openvino-cpu", "fp32", 60.0))
    report = build_report({"cpu": "x"}, {"bundle": "b", "runs": 1, "warmup": 0}, [_manifest(spec)] * 3, results,
                          paths=["fp32", "fp32-other", "int8"])
    ratios = [r["speedup_vs_fp32"] for r in report["results"] if r["runtime"] == "openvino-cpu"]
    assert ratios == pytest.approx([1.0, 1.5, 2.0])


def test_bench_skips_a_runtime_one_bundle_has_no_graph_for(bundle_dir, spec, tmp_path):
    """FP32 with ONNX + IR beside an IR-only INT8 bundle: onnxruntime runs on the first only, and the
    report says why it left the second out instead of failing a row."""
    int8 = tmp_path / "int8"
    int8.mkdir()
    manifest = _manifest(spec)
    manifest["precision"] = "int8"
    del manifest["graphs"][0]["files"]["onnx"]
    (int8 / "manifest.json").write_text(json.dumps(manifest))
    rc = bench("--bundle", f"{bundle_dir},{int8}", "--runtime", "onnxruntime-cpu,torch-cpu", "--runs", "1",
               "--warmup", "0", "--json", str(tmp_path / "b.json"))
    report = json.loads((tmp_path / "b.json").read_text())
    assert rc == 0
    assert report["skipped_runtimes"] == {"onnxruntime-cpu (int8)": "the bundle has no onnx graph for 128x192"}
    assert [(r["runtime"], r["bundle_precision"]) for r in report["results"]] == [
        ("onnxruntime-cpu", "fp32"), ("torch-cpu", "fp32")]


def test_bench_encode_times_each_runtimes_encoder(tiny_bundle, tmp_path):
    out = tmp_path / "b.json"
    assert bench("--bundle", str(tiny_bundle.root), "--runtime", "onnxruntime-cpu,openvino-cpu", "--runs", "2",
                 "--warmup", "0", "--no-reference", "--encode", "--json", str(out), "--md", str(tmp_path / "b.md")) == 0
    results = json.loads(out.read_text())["results"]
    assert {r["runtime"] for r in results} == {"onnxruntime-cpu", "openvino-cpu"}
    for r in results:
        assert r["encode_ms"]["mean"] > 0 and len(r["encode_ms"]) > 1, r
    assert "encode mean ms" in (tmp_path / "b.md").read_text()


def test_bench_times_a_size_the_bundle_lacks_tile_by_tile(tiny_bundle, tmp_path):
    out = tmp_path / "b.json"
    assert bench("--bundle", str(tiny_bundle.root), "--size", "192x320", "--runtime", "openvino-cpu", "--runs", "1",
                 "--warmup", "0", "--json", str(out), "--md", str(tmp_path / "b.md")) == 0
    results = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    assert results["openvino-cpu"]["size"] == [192, 320] and results["openvino-cpu"]["tiles"] == 4  # 2 x 2 of 128x192
    assert results["torch-cpu"]["tiles"] == 1  # the reference runs any size whole below its tile


def test_bench_rounds_alternate_the_order_and_pool_the_timings(tiny_bundle):
    from edgecodec.benchmarks.report import header_facts
    from edgecodec.benchmarks.runner import BenchConfig, run_bench

    said = []
    report = run_bench(BenchConfig(bundle=str(tiny_bundle.root), runtimes="onnxruntime-cpu,openvino-cpu", runs=2,
                                   warmup=0, reference=False, rounds=3), say=said.append)
    order = [m.split()[0] for m in said if m.endswith("runs)")]
    assert order == ["onnxruntime-cpu", "openvino-cpu", "openvino-cpu", "onnxruntime-cpu",
                     "onnxruntime-cpu", "openvino-cpu"]
    for r in report["results"]:
        assert r["rounds"] == 3 and len(r["samples_ms"]) == 6 and len(r["round_p50_ms"]) == 3
        assert r["latency_ms"]["n"] == 6 and r["latency_ms"]["min"] == min(r["samples_ms"])
    assert "3 rounds in alternating order" in header_facts(report)["method"]


def test_a_failed_round_fails_the_job():
    from edgecodec.benchmarks.runner import pool_rounds

    ok = {"runtime": "x", "samples_ms": [1.0], "latency_ms": summarize([1.0]), "peak_rss_mb": 1.0, "wall_s": 1.0}
    assert pool_rounds([ok, {"runtime": "x", "error": "gone"}])["error"] == "gone"
    assert pool_rounds([ok])["samples_ms"] == [1.0] and "rounds" not in pool_rounds([ok])
