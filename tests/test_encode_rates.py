"""One encoder pass for every rate, the seed search's decode reused, and the model's default seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.apps.cli import main
from edgecodec.apps.evaluate import evaluate
from edgecodec.coding import encode_image, encode_image_rates, encode_rates, encode_with
from edgecodec.errors import ModelError
from edgecodec.imageio import save_png
from edgecodec.metrics import psnr
from edgecodec.weights import SEEDS_KEY, load_model, save_codec


@pytest.mark.parametrize("seeds", [1, 3])
def test_one_pass_gives_each_rates_own_stream(tiny, tiny_decoder, photo, seeds):
    rates = list(range(tiny_decoder.spec.num_rates))
    together = encode_rates(tiny_decoder, photo, rates, seeds=seeds)
    models = encode_image_rates(tiny.codec, photo, rates, seeds=seeds)
    for rate in rates:
        alone = encode_with(tiny_decoder, photo, rate, seeds=seeds)
        assert together[rate].data == alone == models[rate].data == encode_image(tiny.codec, photo, rate, seeds=seeds)
        if seeds == 1:
            assert together[rate].image is None  # nothing was decoded
        else:  # the kept decode is exactly what decoding the stream gives
            assert np.array_equal(together[rate].image, tiny_decoder.decode(together[rate].data))


def test_eval_measures_the_search_decode_and_times_itself(tiny_decoder, photo):
    calls = []
    decode = tiny_decoder.decode
    tiny_decoder.decode = lambda data: calls.append(data) or decode(data)
    try:
        res = evaluate(tiny_decoder, tiny_decoder, [("a", photo)], [0, 2], seeds=2)
    finally:
        del tiny_decoder.decode
    assert calls == []  # the seed search's decodes were the decodes measured
    for row in res["images"]:
        data = encode_with(tiny_decoder, photo, row["rate"], seeds=2)
        assert row["bytes"] == len(data)
        assert row["psnr"] == pytest.approx(psnr(photo, tiny_decoder.decode(data)))
    t = res["timing"]
    assert t["wall_s"] > 0 and t["encode_s"] > 0 and t["decode_s"] == 0
    assert t["encode_share"] + t["decode_share"] + t["measure_share"] == pytest.approx(1, abs=2e-3)


def test_default_seeds_come_from_the_model(tmp_path, tiny, photo):
    assert tiny.seeds == 1  # the shipped tiny's card measured +0.00 dB for a seed search
    folder = tmp_path / "imgs"
    folder.mkdir()
    save_png(folder / "a.png", photo[:64, :64])
    path = tmp_path / "m.safetensors"
    save_codec(tiny.codec, path, metadata={SEEDS_KEY: "3"})
    assert load_model(str(path)).seeds == 3
    out = tmp_path / "e.json"
    assert main(["eval", str(folder), "--rate", "1", "--model", str(path), "--json", str(out),
                 "--runtime", "torch-cpu"]) == 0
    res = json.loads(out.read_text())
    assert res["seeds"] == 3 and res["model"]["seeds"] == 3
    enc = tmp_path / "a.edc"
    assert main(["encode", str(folder / "a.png"), "--rate", "1", "--model", str(path), "-o", str(enc),
                 "--runtime", "torch-cpu"]) == 0
    assert enc.read_bytes() == encode_image(tiny.codec, photo[:64, :64], 1, seeds=3)
    assert main(["encode", str(folder / "a.png"), "--rate", "1", "--model", str(path), "-o", str(enc),
                 "--runtime", "torch-cpu", "--seeds", "1"]) == 0
    assert bitstream.read_header(enc.read_bytes()).seed == bitstream.read_header(
        encode_image(tiny.codec, photo[:64, :64], 1)).seed
    save_codec(tiny.codec, path, metadata={SEEDS_KEY: "many"})
    with pytest.raises(ModelError, match=SEEDS_KEY):
        load_model(str(path))
