"""`edgecodec import diffo` and `edgecodec trace` against DiffO's own code: the fixture in
../shared/fixtures/diffo-ref/ (DiffO's modules at a reduced config, random weights, every stage of two
decodes). Skips cleanly when that folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgecodec.apps.cli import main

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "diffo-ref"
pytestmark = pytest.mark.skipif(not (FIXTURE / "io.npz").is_file(), reason="../shared/fixtures/diffo-ref is absent")
# the fixture README's tolerances for a float32 re-implementation (max abs; image_raw also mean abs)
TOLERANCE = {"z_base": 5e-5, "x_t": 5e-5, "x0": 1e-4, "image_raw": 5e-3}
REFERENCE = {"z_base": "z_base", "x_t": "x_T", "x0": "x0", "image_raw": "out_raw"}
CASES = ("h512w512", "h512w1024")


def _import(out: Path, unet=None, latent=None, pixel=None, extra=()) -> int:
    return main(["import", "diffo", "--config", str(FIXTURE / "config.yaml"),
                 "--unet", str(unet or FIXTURE / "ema_model.pth"),
                 "--latent-vq", str(latent or FIXTURE / "vq_model.pth.tar"),
                 "--pixel-vq", str(pixel or FIXTURE / "GT_vq_model.pth.tar"), *extra, "-o", str(out)])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffo") / "diffo-ref.safetensors"
    assert _import(out) == 0
    return out


@pytest.mark.parametrize("case", CASES)
def test_every_stage_matches_diffo(imported, tmp_path, case):
    io = np.load(FIXTURE / "io.npz")
    np.save(tmp_path / "idx.npy", io[f"{case}_indices"])
    np.save(tmp_path / "eps.npy", io[f"{case}_eps"])
    assert main(["trace", "--model", str(imported), "--indices", str(tmp_path / "idx.npy"),
                 "--noise", str(tmp_path / "eps.npy"), "-o", str(tmp_path / "t.npz")]) == 0
    trace = np.load(tmp_path / "t.npz")
    for stage, tol in TOLERANCE.items():
        diff = np.abs(trace[stage] - io[f"{case}_{REFERENCE[stage]}"])
        assert diff.max() <= tol, (stage, float(diff.max()))
    assert np.abs(trace["image_raw"] - io[f"{case}_out_raw"]).mean() <= 1e-4
    clamped = np.clip(trace["image_raw"], -1, 1)
    assert np.abs(clamped - io[f"{case}_out_clamped"]).max() <= TOLERANCE["image_raw"]
    # the stages fit together as DiffO's decode path says
    np.testing.assert_array_equal(trace["indices"][:, 0], io[f"{case}_indices"])
    assert trace["denoiser_input"] == pytest.approx(trace["x_t"] / np.float32(io["input_std_f32"]), abs=1e-5)
    assert trace["image"].shape == (512, 512 if case == "h512w512" else 1024, 3)


def test_operating_point_from_the_schedule(imported):
    from edgecodec.apps.diffo_import import read_yaml, schedule

    io = np.load(FIXTURE / "io.npz")
    point = schedule(read_yaml(str(FIXTURE / "config.yaml"))["diffusion"]["params"])
    assert point["sqrt_etas"] == pytest.approx(io["sqrt_etas"].tolist(), rel=1e-12)
    assert np.float32(point["sigma"]) == io["noise_coef_f32"]
    assert np.float32(point["input_std"]) == io["input_std_f32"] and point["timestep"] == int(io["t"])


def test_a_missing_tensor_is_named(tmp_path, capsys):
    state = torch.load(FIXTURE / "ema_model.pth", map_location="cpu")
    state.pop("middle_block.1.blocks.0.attn.qkv.weight")
    torch.save(state, tmp_path / "ema.pth")
    assert _import(tmp_path / "m.safetensors", unet=tmp_path / "ema.pth") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "denoiser.middle_block.1.blocks.0.attn.qkv.weight" in err[0] and "missing" in err[0]
    assert not (tmp_path / "m.safetensors").exists()


def test_loss_keys_and_module_prefix_are_accepted(tmp_path, imported):
    gt = torch.load(FIXTURE / "GT_vq_model.pth.tar", map_location="cpu", weights_only=False)
    for line in (FIXTURE / "GT_loss_keys.tsv").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].startswith("loss."):
            shape = tuple(int(v) for v in parts[1].strip("()[] ").split(",") if v.strip())
            gt["state_dict"][parts[0]] = torch.zeros(shape)
    torch.save(gt, tmp_path / "gt.pth.tar")
    unet = {f"module.{k}": v for k, v in torch.load(FIXTURE / "ema_model.pth", map_location="cpu").items()}
    torch.save(unet, tmp_path / "ema.pth")
    assert _import(tmp_path / "m.safetensors", unet=tmp_path / "ema.pth", pixel=tmp_path / "gt.pth.tar") == 0
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "m.safetensors"), load_file(imported)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_imported_model_exports_and_decodes_on_every_cpu_runtime(imported, tmp_path):
    from edgecodec.coding import encode_image
    from edgecodec.export.exporter import export_bundle
    from edgecodec.imageio import sample_images
    from edgecodec.runtimes import create_decoder
    from edgecodec.weights import load_model

    loaded = load_model(str(imported))
    bundle = export_bundle(loaded, str(tmp_path / "b"), ["onnx", "openvino"], "fp32", [(512, 512)], parity_images=1)
    assert bundle.manifest["parity"]["passed"]
    photo = next(iter(sample_images().values()))[:500, :500]  # padded to 512x512 by the encoder
    data = encode_image(loaded.codec, photo, 0)
    outs = {rt: create_decoder(rt, model=loaded, bundle=str(bundle.root)).decode(data)
            for rt in ("torch-cpu", "onnxruntime-cpu", "openvino-cpu")}
    for rt, image in outs.items():
        assert image.shape == photo.shape, rt
        assert np.abs(image.astype(int) - outs["torch-cpu"]).max() <= 2, rt


def test_portrait_sizes_decode(imported, tmp_path):
    """Any size DiffO's code accepts: a 1024x512 (portrait) index grid traces through every stage."""
    rng = np.random.default_rng(3)
    np.save(tmp_path / "idx.npy", rng.integers(0, 256, size=(1, 64, 32), dtype=np.int64))
    assert main(["trace", "--model", str(imported), "--indices", str(tmp_path / "idx.npy"), "-o",
                 str(tmp_path / "t.npz")]) == 0
    trace = np.load(tmp_path / "t.npz")
    assert trace["image"].shape == (1024, 512, 3) and np.isfinite(trace["image_raw"]).all()


def test_prior_images_give_a_counted_prior(tmp_path):
    from edgecodec.imageio import sample_images, save_png
    from edgecodec.weights import load_model

    photos = tmp_path / "photos"
    photos.mkdir()
    for name, rgb in sample_images().items():
        save_png(photos / f"{name}.png", np.ascontiguousarray(rgb[:400, :600]))
    assert _import(tmp_path / "m.safetensors", extra=("--prior-images", str(photos))) == 0
    prior = load_model(str(tmp_path / "m.safetensors")).codec.quantizer.prior
    counted = int(prior.sum()) - prior.numel()  # +1 smoothing per code
    assert counted == 2 * (512 // 16) * (1024 // 16)  # every index of both padded photos
