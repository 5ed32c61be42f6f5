"""The CLI contract: verbs, flags, JSON keys, one-line errors and exit codes."""

import json

import pytest

from edgecodec.apps.cli import main
from edgecodec.imageio import save_png

from conftest import run_cli


@pytest.fixture()
def image_file(tmp_path, photo):
    path = tmp_path / "photo.png"
    save_png(path, photo)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_encode_info_decode(image_file, tmp_path, capsys):
    stream = tmp_path / "a.edc"
    assert main(["encode", str(image_file), "-o", str(stream), "--rate", "2"]) == 0
    capsys.readouterr()
    assert main(["info", str(stream), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"width", "height", "rate", "bytes", "bpp", "fingerprint"} <= set(info)
    assert (info["width"], info["height"], info["rate"]) == (260, 200, 2)
    assert info["bytes"] == stream.stat().st_size
    assert info["bpp"] == pytest.approx(stream.stat().st_size * 8 / (260 * 200))
    out = tmp_path / "a.png"
    assert main(["decode", str(stream), "-o", str(out), "--runtime", "torch"]) == 0
    assert out.is_file()


def test_eval_json_schema(tmp_path, photo, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    save_png(folder / "big.png", photo)
    save_png(folder / "small.png", photo[:100, :120])
    out = tmp_path / "eval.json"
    assert main(["eval", str(folder), "--rate", "all", "--json", str(out), "--html", str(tmp_path / "rd.html")]) == 0
    res = json.loads(out.read_text())
    html = (tmp_path / "rd.html").read_text()
    assert 'id="eval-rd-psnr"' in html and 'id="eval-rd-msssim"' in html and "JPEG (Pillow)" in html
    assert {r["quality"] for r in res["rd_baselines"]["webp"]} and res["rd_baselines"]["jpeg"][0]["bpp"] > 0
    assert set(res["mean"]) == {"bpp", "psnr", "ms_ssim"}
    assert len(res["images"]) == 2 * 4
    for row in res["images"]:
        assert {"name", "rate", "bpp", "psnr", "ms_ssim"} <= set(row)
    small = [r for r in res["images"] if r["name"] == "small.png"]
    assert all(r["ms_ssim"] is None for r in small)  # too small for 5 scales
    big = [r for r in res["images"] if r["name"] == "big.png"]
    assert all(0 < r["ms_ssim"] <= 1 for r in big)
    assert res["runtime"]["backend"] == "torch"


def test_eval_markdown_table_with_ablation_baselines_and_seed_gain(tmp_path, photo, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    save_png(folder / "a.png", photo)
    out, md = tmp_path / "eval.json", tmp_path / "eval.md"
    assert main(["eval", str(folder), "--rate", "0,2", "--json", str(out), "--ablation", "--baselines",
                 "--seeds", "3", "--markdown", str(md), "--runtime", "torch-cpu"]) == 0
    res = json.loads(out.read_text())
    assert res["seeds"] == 3
    for row in res["ablation"]:
        # the search keeps, per image, the seed with the smallest error: it cannot lose PSNR
        assert row["seed_search_gain_db"] >= 0
        assert row["psnr_with_denoiser"] == pytest.approx(row["psnr_without_seed_search"] + row["seed_search_gain_db"])
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| rate | bpp | PSNR dB | MS-SSIM | PSNR without denoiser | denoiser gain |")
    assert "seed search gain (3 seeds)" in lines[0] and "WebP bpp for our PSNR" in lines[0]
    assert len(lines) == 4 and lines[3].startswith("| 2 | ") and "at floor)" in lines[3]


def test_devices_json(capsys):
    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["runtime"]: r for r in rows}
    assert by_name["torch-cpu"]["usable"] is True
    for r in rows:
        assert r["usable"] or r["reason"]


@pytest.mark.parametrize("argv,code,needle", [
    (["encode", "/nonexistent.png", "-o", "x.edc"], 2, "no such file"),
    (["decode", "/nonexistent.edc", "-o", "x.png"], 2, "no such file"),
    (["encode", "{img}", "-o", "{tmp}/x.edc", "--rate", "9"], 2, "rate 9 is not offered"),
    (["encode", "{img}", "-o", "{tmp}/x.edc", "--model", "nope"], 2, "unknown model"),
    (["encode", "{img}", "-o", "{tmp}/x.edc", "--max-pixels", "100"], 2, "above the limit"),
    (["decode", "{img}", "-o", "{tmp}/x.png"], 3, "bad magic"),
    (["info", "{img}"], 3, "bad magic"),
    (["decode", "{stream}", "-o", "{tmp}/x.png", "--runtime", "warp-drive"], 2, "unknown runtime"),
    (["eval", "{tmp}/empty", "--json", "{tmp}/e.json"], 2, "no image files"),
])
def test_user_mistakes_are_one_line(argv, code, needle, image_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    stream = tmp_path / "s.edc"
    stream.write_bytes(b"\x8bEDC" + bytes(40))
    argv = [a.format(img=image_file, tmp=tmp_path, stream=stream) for a in argv]
    assert main(argv) == code
    assert needle in _one_line_error(capsys)


def test_missing_device_is_refused(tmp_path, image_file, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    stream = tmp_path / "a.edc"
    assert main(["encode", str(image_file), "-o", str(stream)]) == 0
    assert main(["decode", str(stream), "-o", str(tmp_path / "o.png"), "--runtime", "torch-cuda"]) == 2
    assert "not usable here" in _one_line_error(capsys)


def test_no_traceback_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.edc"
    bad.write_bytes(b"\x8bEDC\x01" + bytes(60))
    res = run_cli("decode", str(bad), "-o", str(tmp_path / "o.png"))
    assert res.returncode == 3
    assert "Traceback" not in res.stderr and "error:" in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_every_verb_has_help():
    from edgecodec.apps.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    for verb in verbs:
        with pytest.raises(SystemExit) as exit_:
            main([verb, "--help"])
        assert exit_.value.code == 0


def test_demo_writes_streams_images_and_eval(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--rate", "0,3"]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert {r["name"] for r in res["images"]} == {"china", "flower"}
    streams = sorted(p.name for p in (out / "streams").iterdir())
    assert streams == ["china_r0.edc", "china_r3.edc", "flower_r0.edc", "flower_r3.edc"]
    for row in res["images"]:
        size = (out / "streams" / f"{row['name']}_r{row['rate']}.edc").stat().st_size
        assert row["bytes"] == size and row["bpp"] == size * 8 / (640 * 427)
    assert len(list((out / "decoded").iterdir())) == 4


def test_models_lists_every_named_model_with_the_flop_counter(capsys):
    from edgecodec.flops import stage_flops
    from edgecodec.zoo import named_configs

    assert main(["models", "--json", "--size", "512x768"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(named_configs()) >= {"tiny", "diffo", "tiny-edge", "diffo-edge"}
    for name in ("tiny", "diffo"):
        counted = stage_flops(named_configs()[name], 512, 768)
        assert rows[name]["gflops"] == {k: v / 1e9 for k, v in counted.items()}
        assert rows[name]["family"] == "diffo"
    assert rows["tiny"]["trained_weights_ship"] and rows["tiny-edge"]["trained_weights_ship"]
    assert rows["tiny-edge"]["fingerprint"] == rows["tiny"]["fingerprint"]
    assert rows["diffo-edge"]["fingerprint"] == rows["diffo"]["fingerprint"]  # a student adopts its teacher's code
