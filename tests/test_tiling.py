"""Tiling: the plan's invariants, exactness on position-wise graphs, and the torch decoder's tiles."""

import numpy as np
import pytest

from edgecodec.metrics import psnr
from edgecodec.runtimes import tiling
from edgecodec.runtimes.tiling import OVERLAP, Axis, Grid

DS = 16


@pytest.mark.parametrize("tile", [4, 8, 12, 32])
def test_axis_plan_covers_blends_and_owns_every_cell_once(tile):
    for n in range(1, 5 * tile):
        axis = Axis.plan(n, tile)
        spans = axis.spans()
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(b - a == min(tile, n) for a, b in spans)
        for (_, b), (a, _) in zip(spans, spans[1:]):
            assert b - a >= min(OVERLAP, tile // 3), (n, tile, spans)  # neighbours share the overlap
        total = np.zeros(n * DS)
        for (a, b), w in zip(spans, axis.weights(DS)):
            total[a * DS: b * DS] += w
            assert w[0] == 1.0 or a > 0 and w[0] < 0.05  # a tile's own border gets (almost) no weight
        assert np.allclose(total, 1.0, atol=1e-6), (n, tile)  # a partition of unity
        owned = axis.owned()
        assert [o for o, _ in owned[1:]] == [e for _, e in owned[:-1]] and owned[-1][1] == n
        for (a, b), (o0, o1) in zip(spans, owned):
            assert a <= o0 <= o1 <= b


def test_pick_grid_computes_the_fewest_cells():
    grid = tiling.pick_grid(32, 48, [(32, 32), (32, 48), (48, 32)])
    assert grid.tile == (32, 48) and grid.count == 1
    assert tiling.pick_grid(64, 20, [(32, 32), (64, 24)]).tile == (64, 24)  # padded, but one tile


def _pointwise(indices, noise):
    """A stand-in graph whose every output pixel depends only on its own latent cell."""
    value = 0.5 + 0.1 * noise[:, :3] + 0.001 * indices[:, :1]
    return np.repeat(np.repeat(value, DS, axis=2), DS, axis=3)


@pytest.mark.parametrize("size,tile", [((20, 30), (8, 12)), ((9, 40), (12, 12)), ((5, 6), (8, 8))])
def test_tiled_decode_equals_the_whole_on_a_pointwise_graph(size, tile):
    """Noise and indices are sliced from the whole image and the blend sums to one, so a graph
    without spatial context gives the same pixels tiled or not."""
    rng = np.random.default_rng(0)
    h, w = size
    indices = rng.integers(0, 64, (1, 4, h, w))
    noise = rng.standard_normal((1, 32, h, w)).astype(np.float32)
    height, width = h * DS - 5, w * DS - 7
    calls = []

    def run(idx, eps):
        calls.append(idx.shape)
        return _pointwise(idx, eps)

    tiled = tiling.decode(run, indices, noise, Grid.plan(h, w, tile), DS, height, width)
    from edgecodec.frames import to_image

    whole = to_image(_pointwise(indices, noise), height, width)
    assert tiled.shape == (height, width, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1  # float summation order only
    assert all(s[2:] == tile for s in calls)  # every call has the graph's size (short axes padded)


def test_tiled_encode_equals_the_whole_on_a_pointwise_encoder():
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (1, 3, 20 * DS, 30 * DS)).astype(np.float32)

    def run(x):
        return np.rint(x[:, :2, ::DS, ::DS] * 100).astype(np.int64)

    tiled = tiling.encode(run, image, Grid.plan(20, 30, (8, 12)), DS)
    assert np.array_equal(tiled, run(image))


def test_torch_decoder_tiles_above_its_tile_size(tiny, photo):
    """The torch decoder (and its encoder) tile images larger than its tile: streams and pixels
    stay close to the whole-image ones, and decoding stays deterministic."""
    from edgecodec.coding import encode_with
    from edgecodec.runtimes import create_decoder

    whole = create_decoder("torch-cpu", model=tiny)
    tiled = create_decoder("torch-cpu", model=tiny, tile=(128, 192))
    assert whole.grid_for(13, 17) is None and tiled.grid_for(16, 20).count == 6
    data = encode_with(whole, photo, 2)
    tiled_data = encode_with(tiled, photo, 2)
    assert len(tiled_data) == pytest.approx(len(data), rel=0.1)
    a, b = whole.decode(data), tiled.decode(data)
    # 8 x 12 cells is far smaller than the tiles one exports (each tile has its own GroupNorm
    # statistics; the 0.4 tiny: 0.97 dB lower, 23.0 dB against the whole decode here): at 512x512
    # tiles Kodak stays within 0.2 dB (README "Any image size")
    assert abs(psnr(photo, a) - psnr(photo, b)) < 1.5 and psnr(a, b) > 21
    assert abs(psnr(photo, tiled.decode(tiled_data)) - psnr(photo, a)) < 1.5
    assert np.array_equal(b, tiled.decode(data))
    with pytest.raises(Exception, match="multiple"):
        create_decoder("torch-cpu", model=tiny, tile=(100, 192))


def test_info_reports_how_a_runtime_decodes_a_stream(tiny_bundle, tiny, photo, tmp_path, capsys):
    """`info --runtime` decodes once and says what ran: 6 tiles of the 128x192 graph for a 200x260 photo."""
    import json

    from edgecodec.apps.cli import main
    from edgecodec.coding import encode_image

    stream = tmp_path / "s.edc"
    stream.write_bytes(encode_image(tiny.codec, photo, 1))
    assert main(["info", str(stream), "--json", "--runtime", "openvino-cpu", "--bundle", str(tiny_bundle.root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tiles"] == 6 and out["runtime"]["backend"] == "openvino-cpu" and out["decode_ms"] > 0
    assert main(["info", str(stream), "--json"]) == 0
    assert "runtime" not in json.loads(capsys.readouterr().out)  # without --runtime nothing is decoded
