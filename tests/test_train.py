"""Training: the recipe runs every stage, checkpoints, and resumes exactly where it stopped."""

import numpy as np
import pytest
import torch

from edgecodec.imageio import save_png
from edgecodec.apps.train import Recipe, Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny synthetic set: smooth colour fields with edges, 96 x 128."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    for i in range(4):
        img = np.stack([(np.sin(xx / (5 + 3 * i) + c) * 90 + 128) for c in range(3)], -1)
        img[yy > 40 + 5 * i] = rng.integers(0, 255, 3)
        save_png(root / f"im{i}.png", img.clip(0, 255).astype(np.uint8))
    return root


def _recipe() -> Recipe:
    return Recipe(steps=12, fractions=(0.25,) * 4, batch=(2, 4, 4, 2), crop=(64,) * 4, checkpoint_every=100,
                  validate_every=100)


def test_resume_continues_identically(data, tmp_path):
    straight = Trainer("tiny", str(data), str(tmp_path / "a"), _recipe())
    straight.run(progress=False)

    first = Trainer("tiny", str(data), str(tmp_path / "b"), _recipe())
    first.run(stop_after=5, progress=False)  # stops inside the latent stage, which reads the latent cache
    assert first.step == 5 and (tmp_path / "b" / "checkpoint.pt").is_file()
    resumed = Trainer("tiny", str(data), str(tmp_path / "b"), _recipe())
    resumed.load_checkpoint()
    assert resumed.step == 5
    resumed.run(progress=False)

    a, b = straight.codec.state_dict(), resumed.codec.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "b" / "model.safetensors").is_file()
    assert "resumed_at" in (tmp_path / "b" / "train.log").read_text()


def test_trained_model_loads_and_codes(data, tmp_path):
    from edgecodec.coding import encode_image
    from edgecodec.runtimes import create_decoder
    from edgecodec.weights import load_model

    t = Trainer("tiny", str(data), str(tmp_path / "r"), _recipe())
    t.run(progress=False)
    loaded = load_model(str(tmp_path / "r" / "model.safetensors"))
    assert loaded.trained
    prior = loaded.codec.latent_vq.quantize.prior
    assert int(prior.sum()) > prior.numel()  # counted from the data, not the uniform placeholder
    img = np.zeros((64, 64, 3), np.uint8)
    out = create_decoder("torch-cpu", model=loaded).decode(encode_image(loaded.codec, img, 3))
    assert out.shape == img.shape


def test_unknown_config_and_missing_checkpoint(data, tmp_path):
    from edgecodec.errors import EdgecodecError

    with pytest.raises(EdgecodecError, match="unknown config"):
        Trainer("huge", str(data), str(tmp_path), _recipe())
    with pytest.raises(EdgecodecError, match="no checkpoint"):
        Trainer("tiny", str(data), str(tmp_path / "x"), _recipe()).load_checkpoint()


def test_resume_refuses_a_run_with_other_stages(data, tmp_path):
    from edgecodec.apps import checkpoints
    from edgecodec.errors import EdgecodecError

    run = tmp_path / "old"
    Trainer("tiny", str(data), str(run), _recipe()).run(stop_after=1, progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    state["recipe"]["fractions"] = (0.55, 0.1, 0.35)  # a run of the three-stage recipe (0.2)
    checkpoints.save(run, state)
    with pytest.raises(EdgecodecError, match="other stages"):
        Trainer("tiny", str(data), str(run), _recipe()).load_checkpoint()


def test_init_redoes_later_stages_and_keeps_the_rest(data, tmp_path):
    """`--init MODEL --stages latent,denoiser,joint`: the autoencoder's encoder is kept bit for bit,
    the stages that run change their weights, and the steps split over the stages that run."""
    from dataclasses import replace

    from edgecodec.weights import load_model

    first = Trainer("tiny", str(data), str(tmp_path / "a"), _recipe())
    first.run(progress=False)
    recipe = replace(_recipe(), stages=("latent", "denoiser", "joint"))
    assert recipe.stage_steps() == [0, 4, 4, 4]
    again = Trainer("tiny", str(data), str(tmp_path / "b"), recipe, init=str(tmp_path / "a" / "model.safetensors"))
    again.run(progress=False)
    a = load_model(str(tmp_path / "a" / "model.safetensors")).codec.state_dict()
    b = load_model(str(tmp_path / "b" / "model.safetensors")).codec.state_dict()
    for k in a:
        if k.startswith(("pixel_vq.encoder", "pixel_vq.quant_conv")):
            assert torch.equal(a[k], b[k]), k  # no pixel stage, no renormalisation
    changed = lambda prefix: any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))  # noqa: E731
    assert changed("latent_vq.decoder") and changed("denoiser.") and changed("pixel_vq.decoder")
    assert again.step == 12 and "stage_done" in (tmp_path / "b" / "train.log").read_text()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "b" / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["edgecodec.init"] == "model.safetensors" and '"stages": ["latent"' in meta["edgecodec.recipe"]


def test_init_and_stages_are_checked(data, tmp_path):
    from dataclasses import replace

    from edgecodec.errors import EdgecodecError
    from edgecodec.weights import save_codec
    from edgecodec.zoo import build_model, named_configs

    with pytest.raises(EdgecodecError, match="needs --init"):
        Trainer("tiny", str(data), str(tmp_path / "x"), replace(_recipe(), stages=("latent",)))
    with pytest.raises(EdgecodecError, match="unknown stage"):
        Trainer("tiny", str(data), str(tmp_path / "x"), replace(_recipe(), stages=("pixel", "denoise")))
    student = tmp_path / "student.safetensors"
    save_codec(build_model(named_configs()["tiny-edge"]), student)
    with pytest.raises(EdgecodecError, match="another architecture"):
        Trainer("tiny", str(data), str(tmp_path / "x"), _recipe(), init=str(student))
