"""Every verb on an install that lacks torch, ONNX Runtime or OpenVINO: it works, or it ends with one
line naming what is missing and how to get it — never a traceback (issue: the edge install)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecodec.coding import encode_image
from edgecodec.imageio import load_image, save_png

# Hides packages as an install without them would: no finder finds them, so `import name` raises
# ModuleNotFoundError and importlib.util.find_spec(name) answers None (sys.modules[name] = None
# would not do: libraries such as scikit-learn look into sys.modules for torch).
HIDE = """
import sys
HIDDEN = {hidden!r}
class Hide:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
"""

# Runs the verbs in one process, each as `edgecodec VERB ...` would.
DRIVER = """
import contextlib, io, json, sys, traceback
from edgecodec.apps.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            code = 'traceback'
            traceback.print_exc(file=err)
    out.append([argv, code, err.getvalue()])
print(json.dumps(out))
"""

BLOCKED = {
    "torch": ("torch", "safetensors", "pytorch_msssim", "nncf"),
    "onnxruntime": ("onnxruntime",),
    "openvino": ("openvino",),
}


def _verbs(blocked: str, f: dict) -> list[list[str]]:
    bundle = ["--bundle", f["bundle"]]
    if blocked == "torch":
        return [
            ["encode", f["image"], "-o", f["tmp"] + "/x.edc"],
            ["encode", f["image"], "-o", f["tmp"] + "/bundle.edc", "--rate", "2", *bundle],
            ["decode", f["stream"], "-o", f["tmp"] + "/a.png"],
            ["decode", f["stream"], "-o", f["tmp"] + "/b.png", *bundle],
            ["info", f["stream"]],
            ["eval", f["dir"], "--json", f["tmp"] + "/e.json", *bundle],
            ["eval", f["dir"], "--json", f["tmp"] + "/e.json"],
            ["demo", "-o", f["tmp"] + "/demo"],
            ["export", "--size", "128x192", "-o", f["tmp"] + "/exp"],
            ["quantize", "--calib", f["dir"], "--size", "128x192", "--method", "ptq", "-o", f["tmp"] + "/q"],
            ["bench", *bundle, "--runtime", "openvino-cpu", "--runs", "1", "--warmup", "0",
             "--json", f["tmp"] + "/b.json"],
            ["pipeline", "-o", f["tmp"] + "/run"],
            ["train", "--data", f["dir"], "--out", f["tmp"] + "/train"],
            ["distill", "--teacher", "tiny", "--student", "tiny-edge", "--data", f["dir"], "--out", f["tmp"] + "/d"],
            ["import", "diffo", "--config", "c.yaml", "--unet", "u.pth", "--latent-vq", "l.pth",
             "--pixel-vq", "p.pth", "-o", f["tmp"] + "/m.safetensors"],
            ["trace", "--stream", f["stream"], "-o", f["tmp"] + "/t.npz"],
            ["models"],
            ["devices"],
            ["report", f["tmp"] + "/no-run"],
        ]
    runtime = {"onnxruntime": "onnxruntime-cpu", "openvino": "openvino-cpu"}[blocked]
    return [
        ["decode", f["stream"], "-o", f["tmp"] + "/a.png", "--runtime", runtime, *bundle],
        ["decode", f["stream"], "-o", f["tmp"] + "/b.png", *bundle],  # auto takes the other runtime
        ["eval", f["dir"], "--json", f["tmp"] + "/e.json", "--runtime", runtime, *bundle],
        ["bench", *bundle, "--runtime", runtime, "--runs", "1", "--warmup", "0", "--json", f["tmp"] + "/b.json"],
        ["export", "--format", "onnx" if blocked == "onnxruntime" else "openvino", "--size", "64x64",
         "-o", f["tmp"] + "/exp"],
        ["devices"],
    ]


@pytest.fixture(scope="module")
def files(tiny, tiny_bundle, photo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("missing")
    rgb = np.ascontiguousarray(photo[:120, :180])
    (tmp / "imgs").mkdir()
    save_png(tmp / "imgs" / "a.png", rgb)
    (tmp / "s.edc").write_bytes(encode_image(tiny.codec, rgb, 1))
    return {"tmp": str(tmp), "dir": str(tmp / "imgs"), "image": str(tmp / "imgs" / "a.png"),
            "stream": str(tmp / "s.edc"), "bundle": str(tiny_bundle.root)}


@pytest.mark.parametrize("blocked", list(BLOCKED))
def test_no_verb_prints_a_traceback_for_a_missing_package(blocked, files, tiny, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE.format(hidden=set(BLOCKED[blocked])))
    env = {**os.environ, "PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    verbs = _verbs(blocked, files)
    res = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(verbs)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)
    failed = {}
    for argv, code, err in results:
        lines = [line for line in err.splitlines() if line.strip() and "\r" not in line]
        assert "Traceback" not in err, f"{argv}: {err}"
        if code != 0:  # progress notes may come first; the error is one line, the last
            errors = [line for line in lines if "error:" in line]
            assert len(errors) == 1 and lines[-1] == errors[0], f"{argv}: {err}"
            assert errors[0].startswith("edgecodec: error: "), f"{argv}: {err}"
            failed.setdefault(argv[0], errors[0])  # the first failure of each verb
    probe = subprocess.run([sys.executable, "-c", f"import {blocked}"], capture_output=True, env=env)
    assert probe.returncode != 0, "the blocker did not block"
    ok = {argv[0] + (" --bundle" if "--bundle" in argv else "") for argv, code, _ in results if code == 0}
    if blocked == "torch":
        # the edge path works: encode, decode and eval with a bundle; what cannot work names the
        # extra (and the bundle where one would do)
        assert {"encode --bundle", "decode --bundle", "eval --bundle", "info", "devices"} <= ok, ok
        assert 'pip install "edgecodec[torch]"' in failed["encode"] and "--bundle DIR" in failed["encode"]
        assert "--bundle DIR" in failed["decode"] and 'pip install "edgecodec[torch]"' in failed["decode"]
        # the bundle's encoder wrote the very bytes the torch encoder writes (seed search included)
        rgb = load_image(files["image"])
        assert (Path(files["tmp"]) / "bundle.edc").read_bytes() == encode_image(tiny.codec, rgb, 2, seeds=tiny.seeds)
    else:
        assert {"devices", "decode --bundle"} <= ok  # auto falls back to the other runtime of the bundle
        extra = "onnx" if blocked == "onnxruntime" else "openvino"
        for verb in ("decode", "eval", "export"):  # bench records an unusable runtime as skipped
            assert f'pip install "edgecodec[{extra}]"' in failed[verb], failed
