"""OneDC's codec networks (edgecodec.families.onedc.nets) against OneDC's own code: the fixture in
../shared/fixtures/onedc-ref/ (OneDC's modules at a reduced config, random weights, every stage of two encodes and
decodes, float32 on a CPU). Skips cleanly when that folder is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from edgecodec.families.onedc.nets import CodecWidths, OneDCNets, widths_from_state

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "onedc-ref"
pytestmark = pytest.mark.skipif(not (FIXTURE / "model_1.safetensors").is_file(),
                                reason="../shared/fixtures/onedc-ref is absent")
CASES = ("kodim23_h128w192", "kodim05_h150w100")
# max abs diff; measured on a CPU with torch 2.13: <= 3e-7 (hyper), 3e-6 (priors), 3.4e-6 (semantic, x_hat),
# 1.4e-5 (encoder: y reaches |8|)
TOLERANCE = {"hyper": 2e-6, "prior": 1e-5, "semantic": 2e-5, "x_hat": 2e-5, "enc": 1e-4}


@pytest.fixture(scope="module")
def nets() -> OneDCNets:
    from safetensors.torch import load_file

    state = load_file(FIXTURE / "model_1.safetensors")
    model = OneDCNets(widths_from_state(state))
    model.load_state_dict(state, strict=True)
    return model.eval()


def _stages(name: str) -> dict[str, torch.Tensor]:
    with np.load(FIXTURE / f"{name}.npz") as z:
        return {k: torch.from_numpy(z[k].copy()) for k in z.files}


def _close(got: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> None:
    assert got.shape == ref.shape, what
    diff = (got - ref).abs().max().item()
    assert diff <= tol, f"{what}: max |diff| {diff:.3g} > {tol:g}"


def test_widths_from_state_match_fixture_config():
    from safetensors.torch import load_file

    cfg = json.loads((FIXTURE / "fixture_config.json").read_text())
    widths = widths_from_state(load_file(FIXTURE / "model_1.safetensors"))
    assert widths == CodecWidths(bottleneck_ch=cfg["codec"]["bottleneck_ch"], internal_ch=cfg["codec"]["internal_ch"],
                                 unet_ch_config=tuple(cfg["codec"]["unet_ch_config"]), ctrl_ch=cfg["ctrl_ch"],
                                 z_ch=len(cfg["codec"]["z_fsq_levels"]))
    assert CodecWidths.from_dict(json.loads(json.dumps(widths.to_dict()))) == widths


def test_widths_round_trip_other_config():
    widths = CodecWidths(bottleneck_ch=64, internal_ch=128, unet_ch_config=(64, 96, 128), ctrl_ch=48, z_ch=6)
    with torch.device("meta"):
        state = OneDCNets(widths).state_dict()
    assert widths_from_state(state) == widths


def test_released_sizes():
    """Parameter counts of the released widths; the decode side equals the notes' analytic count, the encoder
    is 299.1 M (the notes' 295.2 M is short; the total, 394.1 M, is the paper's '394M')."""
    with torch.device("meta"):
        nets = OneDCNets(CodecWidths.released())

    def count(*mods: torch.nn.Module) -> float:
        return sum(p.numel() for m in mods for p in m.parameters()) / 1e6

    got = {"hyper": count(nets.hyper_dec, nets.y_prior_fusion, nets.y_spatial_prior_reduction),
           "spatial": count(nets.y_spatial_prior_adaptor_1, nets.y_spatial_prior_adaptor_2,
                            nets.y_spatial_prior_adaptor_3, nets.y_spatial_prior),
           "semantic": count(nets.semantic_adaptor), "g_s": count(nets.dec), "enc": count(nets.enc),
           "hyper_enc": count(nets.hyper_enc)}
    want = {"hyper": 2.0, "spatial": 3.17, "semantic": 39.19, "g_s": 35.88, "enc": 299.13, "hyper_enc": 14.78}
    assert got == pytest.approx(want, abs=0.01)


@pytest.mark.parametrize("name", CASES)
def test_decode_stages(nets: OneDCNets, name: str):
    s = _stages(name)
    with torch.no_grad():
        z_semantic, z_entropy = nets.hyper_dec(s["z_hat"])
        _close(z_semantic, s["z_semantic"], TOLERANCE["hyper"], "z_semantic")
        _close(z_entropy, s["z_entropy"], TOLERANCE["hyper"], "z_entropy")
        z_semantic, params = nets.hyper(s["z_hat"])
        common = nets.common(params)
        _close(common, s["common_params"], TOLERANCE["prior"], "common_params")
        priors = [nets.split(params)]
        decoded = torch.zeros_like(s["y_hat"])  # mask of the positions decoded before pass k
        for k in (1, 2, 3):
            decoded = decoded + s[f"pass{k - 1}_mask"].float()
            priors.append(nets.spatial_prior(k, s["y_hat"] * decoded, common))
        for k, (scales, means) in enumerate(priors):
            _close(scales, s[f"prior{k}_scales"], TOLERANCE["prior"], f"prior{k}_scales")
            _close(means, s[f"prior{k}_means"], TOLERANCE["prior"], f"prior{k}_means")
        semantic_map, tokens = nets.tokens(z_semantic)
        _close(semantic_map, s["semantic_map"], TOLERANCE["semantic"], "semantic_map")
        _close(tokens, s["tokens"], TOLERANCE["semantic"], "tokens")
        _close(nets.synthesis(s["y_hat"], s["semantic_map"]), s["x_hat"], TOLERANCE["x_hat"], "x_hat")


@pytest.mark.parametrize("name", CASES)
def test_encode_stages(nets: OneDCNets, name: str):
    s = _stages(name)
    rgb = np.asarray(Image.open(FIXTURE / f"{name}.png").convert("RGB")).copy()
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 * 2 - 1  # OneDC: ToTensor() * 2 - 1
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")  # bottom/right to multiples of 64
    with torch.no_grad():
        y, sem = nets.analysis(x, s["enc_x_latent"])
        _close(y, s["enc_y"], TOLERANCE["enc"], "enc_y")
        _close(nets.hyper_analysis(y, sem), s["enc_z"], TOLERANCE["enc"], "enc_z")
