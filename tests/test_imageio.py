"""Tests for edgecodec.imageio: conversions, limits, bad files, atomic writes, samples."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecodec import imageio
from edgecodec.errors import EdgecodecError, ImageError
from edgecodec.imageio import (
    DEFAULT_MAX_PIXELS,
    list_images,
    load_image,
    sample_images,
    save_png,
    write_bytes_atomic,
    write_text_atomic,
)

RNG = np.random.default_rng(1234)
H, W = 12, 17


def rgb_noise(h: int = H, w: int = W) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG built by hand: lets the header claim any size and allows 16-bit RGB."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def load_with_notices(path: Path, **kw) -> tuple[np.ndarray, list[str]]:
    notices: list[str] = []
    arr = load_image(path, notify=notices.append, **kw)
    return arr, notices


def assert_rgb8(arr: np.ndarray, h: int = H, w: int = W) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.shape == (h, w, 3)
    assert arr.dtype == np.uint8


# --------------------------------------------------------------------------- plain reads


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "webp"])
def test_lossless_rgb_round_trip_without_notice(tmp_path, ext):
    rgb = rgb_noise()
    path = tmp_path / f"x.{ext}"
    kw = {"lossless": True} if ext == "webp" else {}
    Image.fromarray(rgb).save(path, **kw)
    arr, notices = load_with_notices(path)
    assert_rgb8(arr)
    assert np.array_equal(arr, rgb)
    assert notices == []


def test_jpeg_rgb_reads_without_notice(tmp_path):
    path = tmp_path / "x.JPG"
    Image.fromarray(rgb_noise()).save(path, format="JPEG", quality=95)
    arr, notices = load_with_notices(path)
    assert_rgb8(arr)
    assert notices == []


def test_default_max_pixels():
    assert DEFAULT_MAX_PIXELS == 64_000_000


def test_torch_is_not_imported():
    code = "import sys, edgecodec.imageio; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- conversions


def test_grayscale_L(tmp_path):
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    arr, notices = load_with_notices(tmp_path / "g.png")
    assert_rgb8(arr)
    for c in range(3):
        assert np.array_equal(arr[..., c], gray)
    assert len(notices) == 1 and "grayscale" in notices[0]


def test_grayscale_alpha_LA_composited_on_white(tmp_path):
    la = np.zeros((H, W, 2), dtype=np.uint8)
    la[..., 1] = 0  # fully transparent black -> white
    la[0, 0] = (0, 255)  # one opaque black pixel
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    arr, notices = load_with_notices(tmp_path / "la.png")
    assert_rgb8(arr)
    assert (arr[0, 0] == 0).all()
    assert (arr[1:, :] == 255).all()
    assert len(notices) == 1 and "alpha" in notices[0] and "white" in notices[0]


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128  # half transparent red-ish over white
    rgba[0, 0] = (10, 20, 30, 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    arr, notices = load_with_notices(tmp_path / "a.png")
    assert_rgb8(arr)
    assert tuple(arr[0, 0]) == (10, 20, 30)
    expected = [round((200 * 128 + 255 * 127) / 255), round(255 * 127 / 255), round(255 * 127 / 255)]
    assert np.abs(arr[1, 1].astype(int) - expected).max() <= 1
    assert len(notices) == 1 and "alpha" in notices[0] and "white" in notices[0]


def test_palette_P(tmp_path):
    rgb = rgb_noise()
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "p.png")
    arr, notices = load_with_notices(tmp_path / "p.png")
    assert_rgb8(arr)
    assert np.array_equal(arr, np.asarray(pal.convert("RGB")))
    assert len(notices) == 1 and "palette" in notices[0]


def test_palette_with_transparency_composited_on_white(tmp_path):
    pal = Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).convert("P")
    pal.save(tmp_path / "pt.png", transparency=0)
    arr, notices = load_with_notices(tmp_path / "pt.png")
    assert_rgb8(arr)
    assert (arr == 255).all()
    assert len(notices) == 1 and "white" in notices[0]


def test_16bit_grayscale_png_scaled_by_257(tmp_path):
    g16 = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    g16[0, :4] = (0, 128, 129, 65535)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16") or im.mode == "I"
    arr, notices = load_with_notices(tmp_path / "g16.png")
    assert_rgb8(arr)
    expected = np.rint(g16 / 257).astype(np.uint8)
    assert np.array_equal(arr[..., 0], expected)
    assert np.array_equal(arr[..., 2], expected)
    assert tuple(arr[0, :4, 0]) == (0, 0, 1, 255)
    assert len(notices) == 1 and "16-bit" in notices[0]


def test_16bit_rgb_png(tmp_path):
    rgb16 = RNG.integers(0, 65536, (H, W, 3)).astype(">u2")
    raw = b"".join(b"\x00" + rgb16[i].tobytes() for i in range(H))
    (tmp_path / "rgb16.png").write_bytes(png_bytes(W, H, 16, 2, raw))
    arr, notices = load_with_notices(tmp_path / "rgb16.png")
    assert_rgb8(arr)
    # Pillow keeps the high byte; round(v/257) differs from it by at most 1.
    assert np.abs(arr.astype(int) - np.rint(rgb16 / 257)).max() <= 1
    assert len(notices) == 1 and "16-bit" in notices[0]


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(rgb_noise()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    arr, notices = load_with_notices(tmp_path / "c.jpg")
    assert_rgb8(arr)
    assert len(notices) == 1 and "CMYK" in notices[0]


def test_float_tiff(tmp_path):
    f = RNG.random((H, W), dtype=np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    arr, notices = load_with_notices(tmp_path / "f.tif")
    assert_rgb8(arr)
    assert np.array_equal(arr[..., 1], np.rint(f.astype(np.float64) * 255).astype(np.uint8))
    assert len(notices) == 1 and "float" in notices[0]


def test_int32_tiff(tmp_path):
    i = RNG.integers(0, 65536, (H, W)).astype(np.int32)
    Image.fromarray(i, mode="I").save(tmp_path / "i.tif")
    arr, notices = load_with_notices(tmp_path / "i.tif")
    assert_rgb8(arr)
    assert len(notices) == 1 and "integer" in notices[0]


def test_multi_frame_uses_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((H, W, 3), v, dtype=np.uint8)) for v in (10, 120, 240)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    arr, notices = load_with_notices(tmp_path / "m.tif")
    assert_rgb8(arr)
    assert (arr == 10).all()
    assert len(notices) == 1 and "first" in notices[0]


def test_notice_goes_to_warnings_without_notify(tmp_path):
    Image.fromarray(np.zeros((H, W), dtype=np.uint8), mode="L").save(tmp_path / "g.png")
    with pytest.warns(UserWarning, match="grayscale") as record:
        arr = load_image(tmp_path / "g.png")
    assert_rgb8(arr)
    assert record[0].filename == __file__  # points at the caller, not at imageio


def test_notify_exception_is_not_swallowed(tmp_path):
    Image.fromarray(np.zeros((H, W), dtype=np.uint8), mode="L").save(tmp_path / "g.png")

    def strict(msg):
        raise KeyError("caller says no")

    with pytest.raises(KeyError):
        load_image(tmp_path / "g.png", notify=strict)


def test_exif_orientation_applied(tmp_path):
    im = Image.fromarray(rgb_noise())
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    arr, _ = load_with_notices(tmp_path / "r.jpg")
    assert_rgb8(arr, h=W, w=H)


# --------------------------------------------------------------------------- pixel limit


def test_pixel_limit_checked_before_decoding(tmp_path):
    # Header says 9000 x 9000 but the pixel data is empty: decoding would fail with
    # "truncated", so getting the limit message proves the check came first.
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(9000, 9000, 8, 0, b""))
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=1_000_000)
    msg = str(info.value)
    assert "9000x9000" in msg and "81,000,000" in msg and "1,000,000" in msg
    assert "--max-pixels" in msg
    assert "\n" not in msg


def test_pillow_bomb_limit_is_not_in_force(tmp_path):
    # 400 MP is over Pillow's own 2x limit (~179 MP): our message must come, not Pillow's.
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(20000, 20000, 8, 0, b""))
    with pytest.raises(ImageError, match="--max-pixels"):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS is None


def test_image_under_limit_loads(tmp_path):
    Image.fromarray(rgb_noise()).save(tmp_path / "ok.png")
    assert_rgb8(load_image(tmp_path / "ok.png", max_pixels=H * W))
    with pytest.raises(ImageError):
        load_image(tmp_path / "ok.png", max_pixels=H * W - 1)


# --------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "e.png")


def test_text_file_named_png(tmp_path):
    (tmp_path / "t.png").write_text("this is not an image\n")
    with pytest.raises(ImageError, match="not a PNG"):
        load_image(tmp_path / "t.png")


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_file(tmp_path, ext):
    full = tmp_path / f"full.{ext}"
    Image.fromarray(rgb_noise(64, 64)).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        load_image(cut)
    assert "\n" not in str(info.value)


def test_eps_is_not_parsed(tmp_path):
    (tmp_path / "x.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError):
        load_image(tmp_path / "x.png")


# --------------------------------------------------------------------------- writing


def test_save_png_round_trip(tmp_path):
    rgb = rgb_noise()
    save_png(tmp_path / "o.png", rgb)
    assert np.array_equal(load_image(tmp_path / "o.png"), rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_save_png_accepts_non_contiguous(tmp_path):
    rgb = rgb_noise(20, 20)[::2, ::2]
    save_png(tmp_path / "o.png", rgb)
    assert np.array_equal(load_image(tmp_path / "o.png"), rgb)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), dtype=np.uint8),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((4, 4, 3), dtype=np.float32),
        np.zeros((0, 4, 3), dtype=np.uint8),
        [[1, 2, 3]],
    ],
)
def test_save_png_bad_array_keeps_old_file(tmp_path, bad):
    path = tmp_path / "o.png"
    rgb = rgb_noise()
    save_png(path, rgb)
    before = path.read_bytes()
    with pytest.raises(ImageError):
        save_png(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "s.bin"
    path.write_bytes(b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.os, "replace", boom)
    with pytest.raises(EdgecodecError, match="No space left"):
        write_bytes_atomic(path, b"new")
    with pytest.raises(ImageError):
        save_png(path, rgb_noise())
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.bin"]


def test_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "s.bin"
    path.write_bytes(b"old")

    def half_then_fail(fh):
        fh.write(b"partial")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        imageio._atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.bin"]


def test_write_bytes_and_text_atomic(tmp_path):
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_bytes_atomic(tmp_path / "b.bin", b"\x02")  # overwrite
    write_text_atomic(tmp_path / "t.txt", "héllo\nwörld\n")
    assert (tmp_path / "b.bin").read_bytes() == b"\x02"
    assert (tmp_path / "t.txt").read_bytes() == "héllo\nwörld\n".encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "t.txt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(EdgecodecError, match="does not exist"):
        write_bytes_atomic(tmp_path / "nodir" / "x.bin", b"x")
    with pytest.raises(ImageError):
        save_png(tmp_path / "nodir" / "x.png", rgb_noise())


def test_write_over_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(EdgecodecError, match="directory"):
        write_bytes_atomic(tmp_path / "d", b"x")


# --------------------------------------------------------------------------- finding images


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.JPEG", "d.webp", "e.bmp", "f.tif", "g.TIFF"]:
        (tmp_path / name).write_bytes(b"x")
    for name in ["notes.txt", ".hidden.png", "noext"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "z.png").write_bytes(b"x")
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["a.jpg", "b.PNG", "c.JPEG", "d.webp", "e.bmp", "f.tif", "g.TIFF"]
    assert all(isinstance(p, Path) for p in found)


def test_list_images_errors(tmp_path):
    with pytest.raises(ImageError, match="no such directory"):
        list_images(tmp_path / "missing")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(ImageError, match="not a directory"):
        list_images(tmp_path / "f.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(ImageError, match="no image files"):
        list_images(tmp_path / "empty")


# --------------------------------------------------------------------------- samples


def test_sample_images():
    pytest.importorskip("sklearn")
    samples = sample_images()
    assert set(samples) == {"china", "flower"}
    for arr in samples.values():
        assert arr.shape == (427, 640, 3)
        assert arr.dtype == np.uint8
        assert arr.std() > 10  # a real photo, not a blank
    # fresh copies: mutating one result does not affect the next call
    samples["china"][:] = 0
    assert sample_images()["china"].any()


def test_sample_images_without_sklearn(monkeypatch):
    monkeypatch.setattr(imageio, "_SAMPLE_CACHE", None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImageError, match=r"edgecodec\[quantize\]"):
        sample_images()
