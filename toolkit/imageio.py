"""Reading and writing images, and the project's one implementation of atomic writes.

numpy + Pillow only: this module is part of the edge install and must not import torch.

Every image the codec sees is an H x W x 3 ``uint8`` RGB array. :func:`load_image`
turns whatever a user hands us (grayscale, palette, alpha, 16-bit, CMYK, float, ...)
into that, announcing each conversion with a one-line notice, and refuses images
above a pixel limit *before* decoding any pixel data. Every problem a user can cause
is raised as :class:`~edgecodec.errors.ImageError` with a one-line message.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import IO, Callable

import numpy as np
from PIL import Image, ImageOps

from .errors import EdgecodecError, ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "load_image",
    "save_png",
    "write_bytes_atomic",
    "write_text_atomic",
    "sample_images",
    "list_images",
]

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image (width * height) :func:`load_image` accepts unless told otherwise."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
"""File extensions (lower case) that :func:`list_images` picks up."""

# Pillow formats load_image will try. Restricting them keeps odd parsers (EPS calls
# Ghostscript, for one) away from user files. MPO (multi-picture JPEGs from phones
# and cameras) is reached through the JPEG factory.
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")

Notify = Callable[[str], None]


# --------------------------------------------------------------------------- reading


def _notice(notify: Notify, msg: str) -> None:
    notify(msg)


def load_image(
    path: str | os.PathLike[str],
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    notify: Notify | None = None,
) -> np.ndarray:
    """Read a PNG, JPEG, WebP, BMP or TIFF file as an H x W x 3 ``uint8`` RGB array.

    The pixel count is read from the header and checked against ``max_pixels``
    before any pixel data is decoded (``None`` or ``0`` disables the check). Pillow's
    own decompression-bomb limit is switched off (``PIL.Image.MAX_IMAGE_PIXELS =
    None``, process-wide) so that ``max_pixels`` is the only limit in force.

    EXIF orientation is applied. Anything that is not already 8-bit RGB is converted,
    and each conversion is reported with a one-line notice passed to ``notify`` (or
    ``warnings.warn`` when ``notify`` is None): grayscale, palette, alpha (composited
    onto white), 16-bit (scaled by ``round(v / 257)``), CMYK, YCbCr/LAB/HSV, 32-bit
    integer and float images, and multi-frame files (the first frame is used).

    Raises :class:`ImageError` for a missing path, a directory, an empty, foreign,
    corrupt or truncated file, and an image above ``max_pixels``.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image file")
    if not p.is_file():
        raise ImageError(f"{p}: not a regular file")
    try:
        if p.stat().st_size == 0:
            raise ImageError(f"{p}: file is empty")
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from None

    # Our limit replaces Pillow's: its check runs inside Image.open and would fire
    # (as a warning above ~89 MP, an error above ~179 MP) regardless of max_pixels.
    Image.MAX_IMAGE_PIXELS = None

    # Notices are collected and delivered after decoding, so that a notify callback
    # (or warnings turned into errors) raising is not mistaken for a decoding error.
    notices: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p, formats=_FORMATS) as img:
                rgb = _decode(img, p, max_pixels, notices.append)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"{p}: not a PNG, JPEG, WebP, BMP or TIFF image") from None
    except Image.DecompressionBombError as exc:  # only if someone re-enabled Pillow's limit
        raise ImageError(f"{p}: refused by Pillow's size limit: {exc}") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None
    except MemoryError:
        raise ImageError(f"{p}: not enough memory to decode this image") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{p}: cannot decode image (corrupt or truncated?): {detail}") from None

    for msg in notices:
        if notify is not None:
            notify(msg)
        else:
            warnings.warn(msg, UserWarning, stacklevel=2)
    return rgb


def _decode(img: Image.Image, p: Path, max_pixels: int | None, notify: Notify) -> np.ndarray:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{p}: image has no pixels ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise ImageError(
            f"{p}: image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,}; pass --max-pixels {width * height} (or larger) to allow it"
        )

    # MPO (camera JPEGs carrying extra pictures, e.g. depth maps): the first is the photo.
    if img.format != "MPO" and getattr(img, "is_animated", False):
        _notice(notify, f"{p}: has several frames; using the first")

    # A 16-bit RGB(A) PNG is decoded by Pillow to 8 bits by keeping the high byte
    # (v >> 8); it differs from round(v / 257) by at most 1. Detect it from the tile
    # descriptor before load() so it can be reported.
    sixteen_bit_png = img.format == "PNG" and any(
        len(t) > 3 and isinstance(t[3], str) and t[3].endswith(";16B") for t in (img.tile or [])
    )

    # Bit depth of a 32-bit-integer (mode I) source, known only from the header.
    int_bits: int | None = None
    if img.mode == "I":
        if img.format == "PNG":
            int_bits = 16  # older Pillows opened 16-bit grayscale PNGs as mode I
        else:
            tag = getattr(img, "tag_v2", None)  # TIFF BitsPerSample
            if tag is not None and 258 in tag:
                bps = tag[258]
                int_bits = int(bps[0] if isinstance(bps, (tuple, list)) else bps)

    img.load()  # full decode; truncated or corrupt data raises here
    # Returns a copy (dropping .format and TIFF tags, keeping .info), rotated as EXIF says.
    img = ImageOps.exif_transpose(img) or img

    return _to_rgb8(img, p, notify, sixteen_bit_png, int_bits)


def _to_rgb8(
    img: Image.Image, p: Path, notify: Notify, sixteen_bit_png: bool, int_bits: int | None
) -> np.ndarray:
    mode = img.mode

    # Transparency given as a tRNS colour key rather than a channel (palette images
    # with transparent entries are handled in the "P" branch below).
    if "transparency" in img.info and mode in ("1", "L", "RGB", "I;16", "I;16B"):
        _notice(notify, f"{p}: {_mode_words(mode)} image with a transparent colour; "
                        "converted to RGB, transparency composited onto white")
        if mode.startswith("I;16"):
            arr16 = np.asarray(img).astype(np.uint16)
            gray = _scale16(arr16)
            rgb = np.repeat(gray[..., None], 3, axis=2)
            rgb[arr16 == int(img.info["transparency"])] = 255
            return rgb
        return _composite_on_white(np.asarray(img.convert("RGBA")))

    if mode == "RGB":
        if sixteen_bit_png:
            _notice(notify, f"{p}: 16-bit RGB PNG reduced to 8 bits per channel")
        return _rgb_array(img)
    if mode == "RGBA" or mode == "RGBa":
        if mode == "RGBa":
            img = img.convert("RGBA")
        depth = "16-bit " if sixteen_bit_png else ""
        _notice(notify, f"{p}: {depth}image with an alpha channel; composited onto white"
                        + (", reduced to 8 bits per channel" if depth else ""))
        return _composite_on_white(np.asarray(img))
    if mode == "RGBX":
        return _rgb_array(img.convert("RGB"))
    if mode == "LA" or mode == "La":
        img = img.convert("RGBA")
        _notice(notify, f"{p}: grayscale image with an alpha channel; converted to RGB, "
                        "alpha composited onto white")
        return _composite_on_white(np.asarray(img))
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        rgba = np.asarray(img)
        if (rgba[..., 3] < 255).any():
            _notice(notify, f"{p}: palette image with transparency; converted to RGB, "
                            "transparency composited onto white")
        else:
            _notice(notify, f"{p}: palette image; converted to RGB")
        return _composite_on_white(rgba)
    if mode == "L":
        _notice(notify, f"{p}: grayscale image; converted to RGB")
        return _rgb_array(img.convert("RGB"))
    if mode == "1":
        _notice(notify, f"{p}: 1-bit black-and-white image; converted to RGB")
        return _rgb_array(img.convert("RGB"))
    if mode.startswith("I;16"):
        _notice(notify, f"{p}: 16-bit grayscale image; scaled to 8 bits (v/257) and converted to RGB")
        return _rgb_array(_from_16bit(img).convert("RGB"))
    if mode == "I":
        gray, how = _int32_to_8bit(np.asarray(img), int_bits)
        _notice(notify, f"{p}: 32-bit integer grayscale image; {how} and converted to RGB")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray, how = _float_to_8bit(np.asarray(img))
        _notice(notify, f"{p}: floating-point grayscale image; {how} and converted to RGB")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "CMYK":
        _notice(notify, f"{p}: CMYK image; converted to RGB (naive, no colour profile)")
        return _rgb_array(img.convert("RGB"))
    if mode in ("YCbCr", "LAB", "HSV"):
        _notice(notify, f"{p}: {mode} image; converted to RGB")
        return _rgb_array(img.convert("RGB"))

    # Any other mode Pillow can produce: let Pillow convert it, and say so.
    try:
        rgb = img.convert("RGB")
    except ValueError:
        raise ImageError(f"{p}: unsupported image mode {mode!r}") from None
    _notice(notify, f"{p}: {mode} image; converted to RGB")
    return _rgb_array(rgb)


def _mode_words(mode: str) -> str:
    words = {"1": "1-bit", "L": "grayscale", "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale"}
    return words.get(mode, mode)


def _rgb_array(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:  # pragma: no cover - defensive
        raise ImageError(f"internal: expected 8-bit RGB pixels, got {arr.dtype} {arr.shape}")
    return np.array(arr, dtype=np.uint8, order="C", copy=True)


def _scale16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 by round(v / 257) (halves cannot occur: 257 is odd)."""
    v = values.astype(np.uint32)
    return ((v * 2 + 257) // 514).astype(np.uint8)


def _from_16bit(img: Image.Image) -> Image.Image:
    arr = np.asarray(img)  # I;16 -> <u2, I;16B -> >u2
    return Image.fromarray(_scale16(arr.astype(np.uint16)), mode="L")


def _int32_to_8bit(arr: np.ndarray, bits: int | None) -> tuple[np.ndarray, str]:
    """Mode I (32-bit signed) -> uint8, from the header's bit depth where it is below 32,
    else from the data: 0..255 as is, 0..65535 as 16-bit, otherwise min..max stretched."""
    if bits is not None and not 0 < bits < 32:
        bits = None
    a = arr.astype(np.int64)
    if bits is None:
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 255:
            bits = 8
        elif lo >= 0 and hi <= 65535:
            bits = 16
    if bits == 8:
        return np.clip(a, 0, 255).astype(np.uint8), "values used as 8-bit"
    if bits == 16:
        return _scale16(np.clip(a, 0, 65535)), "scaled from 16 to 8 bits (v/257)"
    if bits is not None and 0 < bits < 32:
        top = (1 << bits) - 1
        out = np.rint(np.clip(a, 0, top) * (255.0 / top)).astype(np.uint8)
        return out, f"scaled from {bits} to 8 bits"
    return _stretch(a.astype(np.float64)), "stretched from its min..max to 0..255"


def _float_to_8bit(arr: np.ndarray) -> tuple[np.ndarray, str]:
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8), "values in 0..1 scaled to 0..255"
    if lo >= 0.0 and hi <= 255.0:
        return np.rint(a).astype(np.uint8), "values in 0..255 rounded to 8 bits"
    return _stretch(a), "stretched from its min..max to 0..255"


def _stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """H x W x 4 uint8 (straight alpha) -> H x W x 3 uint8 over a white background."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


# --------------------------------------------------------------------------- writing


def _atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], None],
    error: type[EdgecodecError] = EdgecodecError,
) -> None:
    """Write ``path`` all-or-nothing: a temp file in the same directory, then os.replace.

    The temp file is created with mode 0o666 minus the umask (like an ordinary new
    file), flushed and fsync'ed before the rename, and removed if anything fails, so
    an existing ``path`` is either left untouched or fully replaced.
    """
    target = Path(path)
    directory = target.parent
    if target.is_dir():
        raise error(f"{target}: is a directory")
    if not directory.is_dir():
        raise error(f"cannot write {target}: directory {directory} does not exist")

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise error(f"cannot write {target}: {exc.strerror or exc}") from None
    else:  # pragma: no cover - 100 random collisions
        raise error(f"cannot write {target}: could not create a temporary file")

    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise error(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + os.replace).

    Raises :class:`~edgecodec.errors.EdgecodecError` with a one-line message when the
    file cannot be written; an existing file is then left as it was.
    """
    payload = bytes(data) if not isinstance(data, bytes) else data
    _atomic_write(path, lambda fh: fh.write(payload))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (no newline translation)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an H x W x 3 ``uint8`` array as an RGB PNG, atomically.

    Raises :class:`ImageError` if ``rgb`` is not H x W x 3 uint8 (nothing is written)
    or if the file cannot be written (an existing file is left untouched).
    """
    if not isinstance(rgb, np.ndarray):
        raise ImageError(f"save_png: expected a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"save_png: expected an H x W x 3 array, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ImageError(f"save_png: expected dtype uint8, got {rgb.dtype}")
    img = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    _atomic_write(path, lambda fh: img.save(fh, format="PNG"), error=ImageError)


# --------------------------------------------------------------------------- finding images


_SAMPLE_CACHE: dict[str, np.ndarray] | None = None


def sample_images() -> dict[str, np.ndarray]:
    """Two natural photos shipped with scikit-learn: ``{"china": ..., "flower": ...}``.

    Each is a 427 x 640 x 3 ``uint8`` array (fresh copies on every call). Nothing is
    downloaded; scikit-learn is imported lazily and, when it is missing, an
    :class:`ImageError` names the extra to install.
    """
    global _SAMPLE_CACHE
    if _SAMPLE_CACHE is None:
        try:
            from sklearn.datasets import load_sample_images
        except ImportError:
            raise ImageError(
                "the sample images come with scikit-learn, which is not installed: "
                "pip install edgecodec[quantize]"
            ) from None
        bunch = load_sample_images()
        found: dict[str, np.ndarray] = {}
        for name, arr in zip(bunch.filenames, bunch.images):
            found[Path(name).stem] = np.ascontiguousarray(arr, dtype=np.uint8)
        missing = {"china", "flower"} - found.keys()
        if missing:  # pragma: no cover - depends on the scikit-learn release
            raise ImageError(f"scikit-learn's sample images lack {', '.join(sorted(missing))}")
        _SAMPLE_CACHE = {k: found[k] for k in ("china", "flower")}
    return {k: v.copy() for k, v in _SAMPLE_CACHE.items()}


def list_images(directory: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``directory`` (not recursive), sorted by name.

    Files are picked by extension, case-insensitively (see ``IMAGE_EXTENSIONS``);
    hidden files (names starting with ".", e.g. macOS "._photo.jpg") are skipped.
    Raises :class:`ImageError` if ``directory`` is missing, not a directory, or
    holds no images.
    """
    d = Path(directory)
    if not d.exists():
        raise ImageError(f"{d}: no such directory")
    if not d.is_dir():
        raise ImageError(f"{d}: not a directory")
    try:
        entries = list(d.iterdir())
    except OSError as exc:
        raise ImageError(f"{d}: cannot list directory: {exc.strerror or exc}") from None
    found = sorted(
        e for e in entries
        if e.suffix.lower() in IMAGE_EXTENSIONS and not e.name.startswith(".") and e.is_file()
    )
    if not found:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageError(f"{d}: no image files ({exts}) in this directory")
    return found
