"""The codec family: sizes, round trips, determinism, weights."""

import hashlib

import numpy as np
import pytest
import torch

from edgecodec import bitstream
from edgecodec.coding import encode_image
from edgecodec.families.diffo.config import CONFIGS
from edgecodec.errors import ModelError
from edgecodec.metrics import psnr

from conftest import run_cli


def test_round_trip_every_rate(tiny, tiny_decoder, photo):
    sizes = []
    for rate in range(tiny.codec.cfg.num_rates):
        data = encode_image(tiny.codec, photo, rate)
        hdr = bitstream.read_header(data)
        assert (hdr.height, hdr.width, hdr.rate) == (200, 260, rate)
        out = tiny_decoder.decode(data)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert np.isfinite(psnr(photo, out))
        sizes.append(len(data))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], "higher rates must cost more bytes"


def test_indices_survive_the_stream(tiny, photo):
    """What the encoder quantized is exactly what the parser hands the graph."""
    from edgecodec.frames import to_model_input

    spec = tiny.codec.stream_spec()
    x = torch.from_numpy(to_model_input(photo, spec.multiple))
    idx = tiny.codec.encode_indices(x, 2).numpy()
    parsed = bitstream.parse(encode_image(tiny.codec, photo, 2), spec)
    assert np.array_equal(parsed.indices, idx)


def test_same_stream_same_image_twice_and_across_processes(tiny, tiny_decoder, photo, tmp_path):
    data = encode_image(tiny.codec, photo, 1)
    a, b = tiny_decoder.decode(data), tiny_decoder.decode(data)
    assert np.array_equal(a, b)
    stream = tmp_path / "x.edc"
    stream.write_bytes(data)
    digests = []
    for i in range(2):
        out = tmp_path / f"out{i}.png"
        res = run_cli("decode", str(stream), "-o", str(out), "--runtime", "torch-cpu")
        assert res.returncode == 0, res.stderr
        from edgecodec.imageio import load_image

        digests.append(hashlib.sha256(load_image(out).tobytes()).hexdigest())
    assert digests[0] == digests[1] == hashlib.sha256(a.tobytes()).hexdigest()


def test_same_image_same_bytes(tiny, photo):
    assert encode_image(tiny.codec, photo, 2) == encode_image(tiny.codec, photo, 2)


def test_seed_search_keeps_the_best_candidate_at_the_same_size(tiny, tiny_decoder, photo):
    """--seeds K stores one of the K derived seeds, the one whose decode is closest to the photo;
    the payload is untouched, so the stream costs the same bytes."""
    from edgecodec.coding import candidate_seeds
    from edgecodec.frames import to_model_input

    spec = tiny.codec.stream_spec()
    rate = 1
    plain = encode_image(tiny.codec, photo, rate)
    searched = encode_image(tiny.codec, photo, rate, seeds=4)
    assert searched == encode_image(tiny.codec, photo, rate, seeds=4), "the search is deterministic"
    assert len(searched) == len(plain)
    idx = tiny.codec.encode_indices(torch.from_numpy(to_model_input(photo, spec.multiple)), rate).numpy()
    seeds = candidate_seeds(idx, 4)
    assert len(set(seeds)) == 4 and bitstream.read_header(plain).seed == seeds[0]

    def sse(seed):
        out = tiny_decoder.decode(bitstream.write(spec, idx, *photo.shape[:2], seed)).astype(np.int64)
        return int(((out - photo) ** 2).sum())

    errors = [sse(s) for s in seeds]
    assert bitstream.read_header(searched).seed == seeds[int(np.argmin(errors))]
    assert len(set(errors)) > 1, "the noise must matter, or there is nothing to search"


def test_fixed_seed_and_seed_search_exclude_each_other(tiny, photo):
    with pytest.raises(Exception, match="not both"):
        encode_image(tiny.codec, photo, 0, seed=7, seeds=4)
    assert bitstream.read_header(encode_image(tiny.codec, photo, 0, seed=7)).seed == 7


def _meta_codec(name):
    from edgecodec.families.diffo.codec import Codec

    with torch.device("meta"):
        return Codec(CONFIGS[name])


def _decode_flops(codec, height, width):
    from edgecodec.flops import decode_flops

    return decode_flops(codec.cfg, height, width)


def test_diffo_matches_published_size():

    codec = _meta_codec("diffo")
    params = codec.decode_side_parameters()
    assert abs(params - 192.4e6) <= 0.01 * 192.4e6, params
    flops = _decode_flops(codec, 512, 768)
    assert abs(flops - 1.69e12) <= 0.05 * 1.69e12, flops
    assert CONFIGS["diffo"].multiple == 256  # four UNet levels of 4-wide windows


def test_tiny_is_edge_sized():

    codec = _meta_codec("tiny")
    assert codec.decode_side_parameters() < 5e6
    assert _decode_flops(codec, 768, 512) < 30e9


def test_diffo_keys_follow_the_checkpoint_layout():
    """Every decode-side key of DiffO's checkpoints exists in our model under a fixed prefix."""
    from pathlib import Path

    layout = Path(__file__).parent / "data" / "diffo_checkpoint_layout.txt"  # facts from DiffO's architecture
    prefix = {"ema_model": "denoiser.", "vq_model": "latent_vq.", "GT_vq_model": "pixel_vq."}
    ours = {k: tuple(v.shape) for k, v in _meta_codec("diffo").state_dict().items()}
    section, checked = None, 0
    for line in layout.read_text().splitlines():
        if line.startswith("## "):
            section = line.split()[1].split("_*")[0]
            continue
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        if key.endswith(("attn_mask", "cluster_size", "embed_avg")):
            continue  # per-shape constants and EMA training state: not weights we keep
        ours_key = prefix[section] + key
        assert ours_key in ours, ours_key
        if not key.endswith("relative_position_index"):
            assert ours[ours_key] == eval(shape), (key, ours[ours_key], shape)
        checked += 1
    assert checked > 800  # 843 decode-side keys in the layout file


def test_shifted_window_mask_reproduces_reference_quirk():
    """Oracle: the reference's own construction, slicing a (1, 1, H, W) tensor as (1, H, W, 1)."""
    from edgecodec.families.diffo.swin import shifted_window_mask

    h, w, ws, s = 8, 12, 4, 2
    img = torch.zeros((1, 1, h, w))
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = img.view(1, 1, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).contiguous().view(-1, ws, ws, 1)
    win = win.permute(0, 2, 3, 1).contiguous().view(-1, ws * ws)
    ref = win.unsqueeze(1) - win.unsqueeze(2)
    ref = ref.masked_fill(ref != 0, -100.0).masked_fill(ref == 0, 0.0).numpy()
    assert np.array_equal(shifted_window_mask(h, w, ws, s).numpy(), ref)
    # the quirk: regions differ along H only, so windows in the last column are unmasked
    assert not ref[w // ws - 1].any()


def test_fingerprint_covers_codebooks_not_decoder_weights(tiny):
    from edgecodec.zoo import build_model

    codec = build_model(tiny.codec.cfg)
    fp = codec.stream_spec().fingerprint
    with torch.no_grad():
        codec.pixel_vq.decoder.conv_out.weight.add_(1.0)
        codec.denoiser.out[2].bias.add_(1.0)
    assert codec.stream_spec().fingerprint == fp
    with torch.no_grad():
        codec.latent_vq.quantize.residual[0].weight[0, 0] += 1e-3
    assert codec.stream_spec().fingerprint != fp


def test_weights_round_trip_and_strict_loading(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from edgecodec.weights import CONFIG_KEY, load_file as load_model_file, save_codec

    path = tmp_path / "m.safetensors"
    save_codec(tiny.codec, path)
    again = load_model_file(path)
    assert again.codec.stream_spec().fingerprint == tiny.codec.stream_spec().fingerprint

    state = load_file(str(path))
    meta = {CONFIG_KEY: tiny.codec.cfg.to_json()}
    state.pop("denoiser.out.2.weight")
    state["denoiser.extra.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(ModelError) as err:
        load_model_file(bad)
    msg = str(err.value)
    assert "1 missing keys: denoiser.out.2.weight" in msg
    assert "1 unexpected keys: denoiser.extra.weight" in msg

    state = load_file(str(path))
    state["pixel_vq.decoder.conv_out.bias"] = torch.zeros(7)
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(ModelError, match="wrong shapes: pixel_vq.decoder.conv_out.bias"):
        load_model_file(bad)


def test_model_file_without_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    from edgecodec.weights import load_model

    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(1)}, str(path))
    with pytest.raises(ModelError, match="no edgecodec config"):
        load_model(str(path))
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(str(tmp_path / "junk.safetensors"))


def test_shipped_weights_load_strictly():
    """The embedded default is trained and its file matches the config key for key."""
    from safetensors.torch import load_file

    from edgecodec.weights import load_model, packaged_weights

    path = packaged_weights("tiny")
    assert path is not None and path.stat().st_size <= 20e6
    loaded = load_model("tiny")
    assert loaded.trained and loaded.source == str(path)
    assert set(load_file(str(path))) == set(loaded.codec.state_dict())
    prior = loaded.codec.latent_vq.quantize.prior
    assert int(prior.min()) >= 1 and int(prior.sum()) > 100 * prior.numel()  # counted on real data
