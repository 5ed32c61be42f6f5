"""`edgecodec pipeline` end to end on a reduced recipe (one small size, the shipped student beside its
teacher, PTQ and a few QAT steps, two rates, two bench runs), and the recipe's error handling."""

import json

import pytest

from edgecodec.apps.cli import main

RECIPE = """
sizes = ["128x192"]
max_images = 1
rates = "0,3"
methods = ["ptq", "qat"]
calibration_samples = 4
qat_steps = 2
quality_drop_db = 1.0
runtimes = "onnxruntime-cpu,openvino-cpu"
bench_runs = 2
bench_warmup = 0
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # QAT next to the bench workers on 2 cores (see test_quantize.py)
    try:
        root = tmp_path_factory.mktemp("pipeline")
        (root / "recipe.toml").write_text(RECIPE)
        rc = main(["pipeline", "--recipe", str(root / "recipe.toml"), "-o", str(root / "run")])
    finally:
        torch.set_num_threads(threads)
    return rc, root / "run", json.loads((root / "run" / "report.json").read_text())


def test_pipeline_runs_every_step(run):
    rc, out, report = run
    assert [s["status"] for s in report["steps"]] == ["ok"] * len(report["steps"]), report["steps"]
    assert [s["step"] for s in report["steps"]][0] == "export the teacher FP32" and len(report["steps"]) == 9
    assert set(report["bundles"]) == {"teacher-fp32", "fp32", "int8-ptq", "int8-qat"}
    for label in report["bundles"]:
        manifest = json.loads((out / label / "manifest.json").read_text())
        assert manifest["precision"] == ("int8" if label.startswith("int8") else "fp32")
        assert manifest["model"]["name"] == ("tiny" if label == "teacher-fp32" else "tiny-edge")
        assert [g["size"] for g in manifest["graphs"]] == [[128, 192]]
    assert report["teacher"]["name"] == "tiny" and report["model"]["name"] == "tiny-edge"
    assert report["gflops"]["deployed"]["total"] * 5 <= report["gflops"]["teacher"]["total"]
    for name in ("bench.json", "bench.md", "bench.html", "report.md"):
        assert (out / name).is_file(), name
    failed = [c for c in report["checks"] if not c["passed"]]
    assert not failed and report["passed"] and rc == 0, failed


def test_pipeline_quality_covers_every_bundle_runtime_and_rate(run):
    _, _, report = run
    rows = report["quality"]["rows"]
    seen = {(r["bundle"], r["runtime"], r["rate"]) for r in rows}
    expected = {("torch", "torch-cpu", r) for r in (0, 3)} | {
        (b, rt, r) for b in ("teacher-fp32", "fp32", "int8-ptq", "int8-qat")
        for rt in ("onnxruntime-cpu", "openvino-cpu") for r in (0, 3)}
    assert seen == expected
    assert {r["model"] for r in rows if r["bundle"] == "torch"} == {"tiny", "tiny-edge"}
    # the same streams for every decoder: bpp agrees, the rates differ
    bpp = {r["rate"]: r["bpp"] for r in rows if r["bundle"] == "torch"}
    assert bpp[3] > bpp[0] and all(r["bpp"] == bpp[r["rate"]] for r in rows)
    fp32 = [r for r in rows if r["bundle"] in ("fp32", "teacher-fp32")]
    assert all(r["psnr_vs_fp32_reference"] >= 50 and r["max_abs_vs_fp32_reference"] <= 2 for r in fp32)
    int8 = [r for r in rows if r["bundle"].startswith("int8")]
    assert all(25 <= r["psnr_vs_fp32_reference"] < 100 for r in int8)  # quantized: close, not identical
    names = [c["check"] for c in report["checks"]]
    assert sum("decodes to the same image twice" in n for n in names) == 8
    assert sum("within" in n and "of teacher" in n for n in names) == 1
    assert sum("PSNR drop against FP32" in n for n in names) == 4
    assert all(c["passed"] for c in report["checks"])  # INT8 drop within quality_drop_db included


def test_pipeline_benches_int8_beside_fp32(run):
    _, out, report = run
    results = report["bench"]["results"]
    assert {(r["runtime"], r["bundle_precision"]) for r in results} == {
        ("onnxruntime-cpu", "fp32"), ("openvino-cpu", "fp32"), ("onnxruntime-cpu", "int8"),
        ("openvino-cpu", "int8"), ("torch-cpu", "fp32")}
    assert len([r for r in results if r["runtime"] == "openvino-cpu"]) == 4  # teacher, student fp32, 2 x int8
    for r in results:
        assert "error" not in r, r
        assert r["speedup_vs_torch"] > 0
        if r["bundle_precision"] == "int8":
            assert r["speedup_vs_fp32"] > 0
    md = (out / "report.md").read_text()
    assert "## Quality" in md and "## Latency" in md and "×fp32" in md and "int8-qat" in md
    assert "side by side" in md and "teacher FP32 (torch)" in md and "tiny-edge FP32 (torch)" in md


def test_report_html_renders_again_byte_for_byte(run, tmp_path):
    _, out, _ = run
    assert main(["report", str(out), "-o", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_bytes() == (out / "report.html").read_bytes()
    html = (out / "report.html").read_text()
    for chart in ("pipeline-rd-psnr", "pareto", "latency-log", "memory", "gflops"):
        assert f'id="{chart}"' in html, chart
    assert "No MS-SSIM: it needs images of at least 161 pixels" in html  # 128x192 here; the README run has it
    assert "JPEG (Pillow)" in html and "WEBP (Pillow)" in html and "<script" not in html


def test_report_html_in_a_real_browser(run, tmp_path):
    """Headless Chromium: every chart is laid out with a size, and nothing is wider than the window."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    _, out, _ = run
    probe = """<script>
    const charts = [...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().width);
    document.title = JSON.stringify({width: document.documentElement.scrollWidth, window: window.innerWidth,
                                     charts: charts.length, empty: charts.filter(w => w < 100).length});
    </script></body>"""
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", probe))
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1024,800", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    title = res.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
    seen = json.loads(title)
    assert seen["charts"] >= 5 and seen["empty"] == 0, seen  # RD, Pareto, latency, memory, compute
    assert seen["width"] <= seen["window"], seen  # wide tables scroll in their own box


@pytest.mark.parametrize("text, message", [
    ("sizes = [\"128x192\"]\nwarp = 9\n", "unknown key 'warp'"),
    ("methods = [\"magic\"]\n", "unknown method 'magic'"),
    ("bench_runs = \"ten\"\n", "'bench_runs' should be int"),
    ("sizes = [\"100x100\"]\n", "not a positive multiple of 64"),
    ("this is not toml", "not valid TOML"),
    ("max_drop = \"small\"\n", "'max_drop' should be float"),
    ("qat_steps = -1\n", "--qat-steps must be >= 0"),
])
def test_bad_recipe_is_one_line(tmp_path, capsys, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    rc = main(["pipeline", "--recipe", str(recipe), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run" / "report.json").exists()
