"""The bench's HTML report: charts, table and escaping, from hand-made results (no runtime runs)."""

import json
import re
from html.parser import HTMLParser

import pytest

from edgecodec.benchmarks.html import PLOT_W, to_html
from edgecodec.benchmarks.output import write_reports
from edgecodec.benchmarks.report import build_report
from edgecodec.apps.cli import main

SIZE = [128, 192]
EVIL = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link"}


def _manifest(precision: str) -> dict:
    return {"model": {"name": "tiny", "source": "random(seed=0)", "fingerprint": "ab" * 8},
            "precision": precision, "graphs": [{"size": SIZE, "gflops": 1.25}]}


def _result(runtime: str, precision: str, mean: float, bundle: str | None) -> dict:
    return {"runtime": runtime, "precision": precision, "bundle_precision": precision, "size": SIZE,
            "bundle": bundle, "gflops": 1.25, "rate": 3, "stream_bytes": 999, "actual_device": "cpu",
            "latency_ms": {"mean": mean, "p50": 0.9 * mean, "p90": 1.2 * mean, "p99": 1.5 * mean},
            "stages_ms": {"parse_ms": 0.2 * mean, "noise_ms": 0.1 * mean, "graph_ms": 0.6 * mean,
                          "post_ms": 0.1 * mean},
            "first_inference_ms": 3 * mean, "compile_ms": 40.0, "peak_rss_mb": 300.0}


def _report(results=None, **kw) -> dict:
    if results is None:  # 100 ms to 10 s, three precisions, one failure
        results = [_result("openvino-cpu", "fp32", 120.0, "/b/fp32"), _result("openvino-cpu", "int8", 100.0, "/b/int8"),
                   _result("onnxruntime-cpu", "fp16", 10_000.0, "/b/fp16"), _result("torch-cpu", "fp32", 400.0, None),
                   {"runtime": "openvino-gpu", "size": SIZE, "error": f"no GPU {EVIL}"}]
    machine = {"cpu": "cpu <b>", "logical_cores": 2, "usable_cores": 2, "load_avg_at_start": [0.1, 0.1, 0.1]}
    return build_report(machine, {"bundle": "b", "runs": 3, "warmup": 1},
                        [_manifest(p) for p in ("fp32", "int8", "fp16")], results,
                        paths=["/b/fp32", "/b/int8", "/b/fp16"], **kw)


class _Balance(HTMLParser):
    """Fails on an end tag that does not close the innermost open element."""

    def __init__(self):
        super().__init__()
        self.stack, self.seen = [], []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <line/> in SVG opens nothing
        self.seen.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def _check_balanced(page: str) -> list[str]:
    parser = _Balance()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser.seen


def _svg(page: str, chart_id: str) -> str:
    return re.search(rf'<svg id="{chart_id}".*?</svg>', page, re.S).group(0)


def test_html_report_charts_table_and_escaping():
    report = _report(skipped={"onnxruntime-cuda": f"no CUDA {EVIL}"})
    page = to_html(report)
    tags = _check_balanced(page)
    assert tags.count("svg") == 2 and tags.count("table") == 1 and "script" not in tags
    assert "<script" not in page and page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert "cpu &lt;b&gt;" in page  # the machine line is escaped too

    # one bar per result that ran, none for the failure; bar widths are linear in the mean
    latency = _svg(page, "latency-chart")
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', latency)]
    assert len(widths) == latency.count("<rect") == 4 and "openvino-gpu" not in latency
    assert widths[2] / widths[3] == pytest.approx(10_000 / 400, rel=0.01) and max(widths) <= PLOT_W
    assert "10,000 ms" in latency and "100.0 ms" in latency  # values written at the bar ends
    assert len(set(re.findall(r'<rect [^>]*fill="(#\w+)"', latency))) == 3  # a colour per precision
    assert _svg(page, "stage-chart").count("<rect") == 4 * 4
    assert "parse + entropy" in page

    # the table has the Markdown table's columns and a row per result that ran
    table = page[page.index("<table>"):page.index("</table>")]
    assert table.count("<tr>") == 1 + 4 and "×torch-cpu" in table and "×fp32" in table and "<th>bundle</th>" in table


def test_html_report_without_results_or_bundle_list():
    empty = _report(results=[])
    page = to_html(empty)
    assert "<svg" not in page and "No runtime produced a latency" in page
    assert _check_balanced(page).count("table") == 1

    old = _report(results=[_result("torch-cpu", "fp32", 50.0, None)])
    del old["bundles"]  # reports from before multi-bundle runs
    page = to_html(old)
    _check_balanced(page)
    assert "<b>Bundle:</b> <code>/b/fp32</code>" in page and "<th>bundle</th>" not in page
    assert _svg(page, "latency-chart").count("<rect") == 1


def test_write_reports_writes_html(tmp_path):
    report = _report()
    write_reports(report, str(tmp_path / "b.json"), html_path=str(tmp_path / "b.html"))
    assert json.loads((tmp_path / "b.json").read_text())["schema"] == report["schema"]
    assert (tmp_path / "b.html").read_text() == to_html(report) and not (tmp_path / "b.md").exists()


def test_bench_help_lists_html(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--html OUT.html" in capsys.readouterr().out
