"""Reliability: a seeded slice of the stream fuzzer, every class of bundle tampering, jobs killed
with SIGKILL at several points, unusual images end to end, and decoders shared by threads and
processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgecodec.bundle import manifest_checksum, open_bundle, sha256_file
from edgecodec.errors import BundleError


# --- streams -------------------------------------------------------------------------------------

def test_fuzz_slice_ends_in_images_or_one_line_errors():
    """300 seeded cases of every mutation kind through parse and three CPU runtimes (the harness
    has run 100,000: README "Reliability")."""
    from edgecodec.benchmarks import fuzz

    summary = fuzz.fuzz(300, seed=7, runtimes=["torch-cpu", "onnxruntime-cpu", "openvino-cpu"])
    assert summary["crashes"] == summary["hangs"] == summary["nondeterministic"] == 0, summary["failures"]
    assert set(summary["by_kind"]) == set(fuzz.KINDS) and all(summary["by_kind"].values())
    assert summary["outcomes"]["decoded"] > 20 and summary["outcomes"]["refused"] > 150
    assert summary["worst_case"]["seconds"] < fuzz.TIME_BOUND_S


# --- bundles -------------------------------------------------------------------------------------

@pytest.fixture()
def copy(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.root, dst)
    return dst


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _rewrite(root: Path, m: dict) -> None:
    """Write a consistent manifest (checksum recomputed): what a careful forger or a buggy tool makes."""
    m["checksum"] = manifest_checksum(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _leaves(d, path=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(d, list) and d and not all(isinstance(v, (int, float)) for v in d):
        for i, v in enumerate(d):
            yield from _leaves(v, path + (i,))
    else:
        yield path


def test_every_manifest_field_edited_or_removed_is_refused(copy):
    original = _manifest(copy)
    leaves = [p for p in _leaves(original) if p != ("checksum",)]
    assert len(leaves) > 60
    for path in leaves:
        for how in ("edit", "remove"):
            m = json.loads(json.dumps(original))
            parent = m
            for k in path[:-1]:
                parent = parent[k]
            if how == "remove":
                del parent[path[-1]]
            else:
                value = parent[path[-1]]
                parent[path[-1]] = (not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
                                    else value + "x" if isinstance(value, str) else [*value, 1] if isinstance(value, list)
                                    else None)
            (copy / "manifest.json").write_text(json.dumps(m))
            with pytest.raises(BundleError):  # mostly "does not match its checksum"; format fields first
                open_bundle(copy)


@pytest.mark.parametrize("key", ["format", "format_version", "model", "precision", "stream_spec", "graphs", "files"])
def test_consistent_manifest_without_a_required_field_is_refused(copy, key):
    m = _manifest(copy)
    del m[key]
    _rewrite(copy, m)
    with pytest.raises(BundleError):
        open_bundle(copy)


def test_every_file_removed_or_changed_is_refused(copy):
    for name in _manifest(copy)["files"]:
        path = copy / name
        data = path.read_bytes()
        path.unlink()
        with pytest.raises(BundleError, match="incomplete"):
            open_bundle(copy)
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 1
        path.write_bytes(bytes(flipped))
        with pytest.raises(BundleError, match="modified"):
            open_bundle(copy)
        path.write_bytes(data)
    open_bundle(copy)  # restored: accepted


def test_symlinks_and_paths_out_of_the_bundle_are_refused(copy, tmp_path):
    name = next(n for n in _manifest(copy)["files"] if n.endswith(".onnx"))
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(copy / name, outside)
    os.symlink(outside, copy / name)  # same bytes, same sha256, but a link that could point anywhere
    with pytest.raises(BundleError, match="symbolic link"):
        open_bundle(copy)
    os.unlink(copy / name)
    shutil.move(outside, copy / name)
    m = _manifest(copy)
    m["files"]["../elsewhere.onnx"] = m["files"][name]
    _rewrite(copy, m)
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(copy)


def _swap_in(copy: Path, name: str, source: Path) -> None:
    """Put another file under `name`, with a manifest made consistent with it."""
    shutil.copy(source, copy / name)
    m = _manifest(copy)
    m["files"][name] = {"sha256": sha256_file(copy / name), "bytes": (copy / name).stat().st_size}
    _rewrite(copy, m)


@pytest.fixture(scope="module")
def other_bundles(tiny, tmp_path_factory):
    """`tiny` at another size; at the same size, a model of another geometry (3 VQ stages) and one
    of the same geometry with other weights (another fingerprint)."""
    from edgecodec.families.diffo.config import TINY
    from edgecodec.export.exporter import export_bundle
    from edgecodec.weights import LoadedModel
    from edgecodec.zoo import build_model

    root = tmp_path_factory.mktemp("others")
    other_size = export_bundle(tiny, str(root / "size"), ["onnx", "openvino"], "fp32", [(64, 64)], parity_images=1)
    three = LoadedModel(build_model(replace(TINY, name="three", residual_stages=2)), "random(seed=0)", False)
    other_model = export_bundle(three, str(root / "model"), ["onnx", "openvino"], "fp32", [(128, 192)], parity_images=1)
    seeded = LoadedModel(build_model(replace(TINY, init_seed=5)), "random(seed=5)", False)
    other_weights = export_bundle(seeded, str(root / "weights"), ["onnx", "openvino"], "fp32", [(128, 192)],
                                  parity_images=1)
    return {"size": other_size, "model": other_model, "weights": other_weights}


@pytest.mark.parametrize("other,message", [("size", "inputs and outputs"), ("model", "inputs and outputs"),
                                           ("weights", "another model")])
@pytest.mark.parametrize("runtime", ["onnxruntime-cpu", "openvino-cpu"])
def test_a_graph_of_another_size_or_model_is_refused_before_use(copy, other_bundles, other, message, runtime):
    """The graph's shapes give away another size or geometry; the fingerprint export writes into
    every graph file gives away another model of the same geometry."""
    from edgecodec.runtimes import create_decoder

    donor = other_bundles[other]
    fmt = "onnx" if runtime.startswith("onnx") else "openvino"
    ours, theirs = _manifest(copy)["graphs"][0]["files"], donor.manifest["graphs"][0]["files"]
    for key in [fmt] + (["openvino_weights"] if fmt == "openvino" else []):
        _swap_in(copy, ours[key], donor.root / theirs[key])
    open_bundle(copy)  # every checksum agrees: only the graph itself can tell
    with pytest.raises(BundleError, match=message):
        create_decoder(runtime, bundle=str(copy))


def test_decode_and_encode_graphs_swapped_are_refused(copy):
    from edgecodec.runtimes import create_decoder

    g = _manifest(copy)["graphs"][0]
    decode_file, encode_file = g["files"]["onnx"], g["encoder"]["files"]["onnx"]
    a, b = (copy / decode_file).read_bytes(), (copy / encode_file).read_bytes()
    (copy / decode_file).write_bytes(b)
    (copy / encode_file).write_bytes(a)
    m = _manifest(copy)
    for name in (decode_file, encode_file):
        m["files"][name] = {"sha256": sha256_file(copy / name), "bytes": (copy / name).stat().st_size}
    _rewrite(copy, m)
    with pytest.raises(BundleError, match="inputs and outputs"):
        create_decoder("onnxruntime-cpu", bundle=str(copy))


# --- killed jobs -----------------------------------------------------------------------------------

def _kill_after(args: list[str], delay: float, cwd: Path) -> int | None:
    """Run `edgecodec ARGS`, SIGKILL it after `delay` s (None if it finished first)."""
    proc = subprocess.Popen([sys.executable, "-m", "edgecodec.apps.cli", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        proc.wait(timeout=delay)
        return proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def _bundle_absent_or_valid(path: Path) -> str:
    if not path.exists():
        return "absent"
    open_bundle(path)  # raises if it is there but not whole
    return "valid"


@pytest.mark.parametrize("delay", [3.0, 9.0])
def test_killed_export_leaves_no_bundle_that_loads_wrong(tmp_path, delay):
    out = tmp_path / "b"
    rc = _kill_after(["export", "--size", "64x64", "--parity-images", "1", "-o", str(out)], delay, tmp_path)
    state = _bundle_absent_or_valid(out)  # raises if a bundle is there but not whole
    assert state == "valid" if rc == 0 else state in ("absent", "valid")
    # what a kill leaves besides is a hidden staging directory, never a path a reader opens
    assert all(p.name.startswith(".b.") for p in tmp_path.iterdir() if p.name not in ("b",))


def test_next_writer_removes_what_a_killed_writer_left(tmp_path):
    from edgecodec.bundle import BundleWriter, _writer_tag

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    host = _writer_tag().partition("-")[0]
    killed = tmp_path / f".b.partial-{host}-{gone}-x1"
    kept = [tmp_path / f".b.partial-{_writer_tag()}-x2",  # a live writer (this process)
            tmp_path / f".b.partial-00000000-{gone}-x3",  # another host's writer
            tmp_path / ".b.partial-x4",  # a name this version does not write
            tmp_path / f".c.partial-{host}-{gone}-x5"]  # another target's
    for d in [killed, *kept]:
        d.mkdir()
    BundleWriter(tmp_path / "b").abort()
    assert not killed.exists() and all(d.is_dir() for d in kept)


@pytest.mark.parametrize("delay", [8.0])
def test_killed_quantize_leaves_no_bundle_that_loads_wrong(tmp_path, delay):
    from edgecodec.imageio import sample_images, save_png

    calib = tmp_path / "calib"
    calib.mkdir()
    for name, rgb in sample_images().items():
        save_png(calib / f"{name}.png", np.ascontiguousarray(rgb[:128, :128]))
    out = tmp_path / "q"
    _kill_after(["quantize", "--calib", str(calib), "--samples", "2", "--size", "64x64", "--format", "openvino",
                 "--parity-images", "1", "--allow-parity-failure", "-o", str(out)], delay, tmp_path)
    _bundle_absent_or_valid(out)


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    from edgecodec.imageio import sample_images, save_png

    root = tmp_path_factory.mktemp("data")
    for name, rgb in sample_images().items():
        for i in range(2):
            save_png(root / f"{name}{i}.png", np.ascontiguousarray(rgb[100 * i: 100 * i + 128, :192]))
    return root


@pytest.mark.parametrize("job,delay", [("train", 10.0), ("distill", 10.0)])
def test_killed_training_resumes(train_data, tmp_path, job, delay):
    """A kill leaves the previous checkpoint or the new one (never half), no model file or a whole
    one, and `--resume` (or a fresh start, when killed before the first checkpoint) completes."""
    from edgecodec.weights import load_model

    out = tmp_path / "run"
    if job == "train":
        args = ["train", "--data", str(train_data), "--out", str(out), "--steps", "300", "--batch", "1", "--crop", "64", "--checkpoint-every", "5"]
        product = out / "model.safetensors"
    else:
        args = ["distill", "--teacher", "tiny", "--student", "tiny-edge", "--data", str(train_data), "--out", str(out),
                "--steps", "2500", "--batch", "1", "--crop", "64", "--checkpoint-every", "50"]  # ~100 steps/s
        product = out / "student.safetensors"
    rc = _kill_after(args, delay, tmp_path)
    assert rc in (None, 0), f"{job} failed before the kill"
    if rc is not None:
        pytest.skip(f"{job} finished within {delay} s on this machine: nothing was killed")
    assert not product.exists() or load_model(str(product))
    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
    if resume:
        import torch

        killed_at = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
        assert 0 < killed_at <= int(args[args.index("--steps") + 1])  # equal: killed while writing the model
    done = subprocess.run([sys.executable, "-m", "edgecodec.apps.cli", *args, *resume], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert load_model(str(product)).trained


PIPELINE_RECIPE = """
sizes = ["64x64"]
max_images = 1
rates = "0"
methods = ["ptq"]
calibration_samples = 2
runtimes = "openvino-cpu"
bench_runs = 1
bench_warmup = 0
"""


@pytest.mark.parametrize("delay", [12.0])
def test_killed_pipeline_leaves_only_whole_bundles_and_reports(tmp_path, delay):
    (tmp_path / "recipe.toml").write_text(PIPELINE_RECIPE)
    out = tmp_path / "run"
    _kill_after(["pipeline", "--recipe", str(tmp_path / "recipe.toml"), "-o", str(out)], delay, tmp_path)
    if out.exists():
        for child in out.iterdir():
            if child.is_dir() and not child.name.startswith("."):
                _bundle_absent_or_valid(child)  # a bundle directory is whole, whatever the moment
            elif child.suffix == ".json":
                json.loads(child.read_text())  # reports are written atomically


# --- images -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (1, 700), (700, 1), (3, 1000), (64, 2000)])
def test_tiny_and_extreme_images_round_trip(tiny_decoder, tmp_path, shape):
    """1x1 and extreme aspect ratios code to streams that decode at their own size (padded, tiled)."""
    from edgecodec.apps.cli import main
    from edgecodec.imageio import load_image, save_png

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, shape + (3,), dtype=np.uint8)
    save_png(tmp_path / "a.png", rgb)
    assert main(["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.edc"), "--rate", "1", "--seeds", "1"]) == 0
    assert main(["decode", str(tmp_path / "a.edc"), "-o", str(tmp_path / "b.png")]) == 0
    assert load_image(tmp_path / "b.png").shape == shape + (3,)


def test_animated_webp_codes_its_first_frame_with_a_notice(tmp_path):
    from PIL import Image

    from edgecodec.imageio import load_image

    frames = [Image.new("RGB", (32, 24), c) for c in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    notices = []
    rgb = load_image(tmp_path / "a.webp", notify=notices.append)
    assert rgb.shape == (24, 32, 3) and tuple(rgb[0, 0]) == (200, 10, 10)
    assert notices and "frame" in notices[0]


def test_failed_encode_writes_nothing(tmp_path):
    from edgecodec.apps.cli import main

    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert main(["encode", str(tmp_path / "bad.png"), "-o", str(tmp_path / "out.edc")]) != 0
    assert not (tmp_path / "out.edc").exists() and list(tmp_path.iterdir()) == [tmp_path / "bad.png"]


# --- concurrency ----------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["torch-cpu", "onnxruntime-cpu", "openvino-cpu"])
def test_one_decoder_shared_by_threads_gives_single_threaded_pixels(tiny, tiny_bundle, photo, runtime):
    from edgecodec.coding import encode_image
    from edgecodec.runtimes import create_decoder

    streams = [encode_image(tiny.codec, np.ascontiguousarray(photo[:128, :192]), r) for r in range(4)]
    streams.append(encode_image(tiny.codec, photo, 2))  # 200x260: tiled on the bundle runtimes
    decoder = create_decoder(runtime, model=tiny, bundle=str(tiny_bundle.root))
    expected = [decoder.decode(s) for s in streams]
    results, errors = {}, []

    def work(k: int) -> None:
        try:
            for i in range(len(streams)):
                j = (i + k) % len(streams)
                results[k, j] = decoder.decode(streams[j])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (k, j), image in results.items():
        assert np.array_equal(image, expected[j]), (runtime, k, j)


def test_processes_sharing_one_model_cache_agree(tiny_bundle, tmp_path):
    """Four processes compile the same bundle into one fresh OpenVINO model cache at once."""
    from edgecodec.benchmarks.inputs import synthetic_stream

    stream = tmp_path / "s.edc"
    stream.write_bytes(synthetic_stream(tiny_bundle.spec, 128, 192, 3, seed=1))
    env = {**os.environ, "EDGECODEC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "edgecodec.apps.cli", "decode", str(stream), "-o",
                               str(tmp_path / f"{k}.png"), "--bundle", str(tiny_bundle.root), "--runtime", "openvino-cpu"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in range(4)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-400:]
    images = [(tmp_path / f"{k}.png").read_bytes() for k in range(4)]
    assert all(img == images[0] for img in images)
    assert any((tmp_path / "cache" / "openvino").iterdir())
