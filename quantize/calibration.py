"""Calibration and validation data for the INT8 decoder: real images, coded exactly as at decode time.

A calibration item is what the exported decode graph sees when it decodes a real stream: the image
(resized and center-cropped to the graph size) is encoded with `encode_image`, the bytes are parsed
with `bitstream.parse`, the noise is drawn with the decoder's own rule `portable_noise(seed, ...)`
from the stream's seed, and the indices are padded with zeros to every VQ stage, as
runtimes/bundled.py does. Rates are cycled over the items so every rate's sigma, input scale and time
embedding is calibrated. The original (fitted) image is kept: the codec metric is PSNR of the decoded
image against it, not against the FP32 decoder's output.

The same items feed every backend: `feeds()` gives the numpy dict of ONNX Runtime / OpenVINO /
NNCF's ONNX and OpenVINO backends, `tensors()` the torch tuple of DecodeGraph.forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecodec.errors import EdgecodecError, ImageError


@dataclass
class CalibItem:
    name: str  # source image
    rate: int
    seed: int
    stream_bytes: int
    original: np.ndarray  # H x W x 3 uint8: the fitted image that was encoded
    indices: np.ndarray  # (1, num_rates, h, w) int64, unused stages zero
    noise: np.ndarray  # (1, C, h, w) float32

    def feeds(self) -> dict[str, np.ndarray]:
        return {"indices": self.indices, "noise": self.noise, "rate": np.array([self.rate], np.int64)}

    def tensors(self) -> tuple:
        import torch

        return (torch.from_numpy(self.indices), torch.from_numpy(self.noise),
                torch.tensor([self.rate], dtype=torch.int64))


@dataclass
class CalibrationSets:
    calibration: list[CalibItem]
    validation: list[CalibItem]
    size: tuple[int, int]
    source: dict = field(default_factory=dict)  # recorded in the bundle manifest

    def describe(self) -> dict:
        def rows(items):
            return [{"image": i.name, "rate": i.rate, "seed": i.seed, "bytes": i.stream_bytes} for i in items]

        return {**self.source, "size": list(self.size), "calibration_items": len(self.calibration),
                "validation_items": len(self.validation), "calibration": rows(self.calibration),
                "validation": rows(self.validation)}


def fit_image(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize so the image covers height x width (aspect kept), then center-crop to it."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    img = Image.fromarray(rgb)
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), Image.Resampling.LANCZOS)
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(np.asarray(img)[top: top + height, left: left + width])


def read_folder(directory: str, limit: int | None = None,
                notify: Callable[[str], None] | None = None) -> list[tuple[str, np.ndarray]]:
    """Images directly in `directory`, sorted by name (edgecodec.imageio.list_images), first `limit`."""
    from edgecodec.imageio import list_images, load_image

    paths = list_images(directory)
    if limit is not None:
        paths = paths[:limit]
    return [(p.name, load_image(p, notify=notify)) for p in paths]


def pair(i: int, images: int, rates: int) -> tuple[int, int]:
    """(image, rate) of item i: consecutive items cycle through the images and, at the same time,
    through the rates; after lcm(images, rates) items the rates shift by one, so no (image, rate)
    pair repeats until all images x rates are used (2 images x 4 rates: china 0, flower 1, china 2,
    flower 3, then china 1, flower 2, china 3, flower 0)."""
    import math

    block = math.lcm(images, rates)
    return i % images, (i + (i // block) % math.gcd(images, rates) + (i // (images * rates))) % rates


def make_items(codec, images: Sequence[tuple[str, np.ndarray]], size: tuple[int, int], count: int,
               start: int = 0) -> list[CalibItem]:
    """Items start .. start+count-1 of the sequence `pair` defines over `images`: every rate covered
    by any `num_rates` consecutive items, no (image, rate) repeated while others are unused.

    Each is encoded, parsed and given noise exactly as a decoder would (module docstring)."""
    from edgecodec import bitstream
    from edgecodec.coding import encode_image_rates
    from edgecodec.noise import portable_noise

    if not images:
        raise ImageError("no images to calibrate on")
    height, width = size
    spec = codec.stream_spec()
    num_rates = spec.num_rates
    fitted, streams = {}, {}
    items = []
    for i in range(start, start + count):
        k, rate = pair(i, len(images), num_rates)
        name, rgb = images[k]
        if name not in fitted:
            fitted[name] = fit_image(rgb, height, width)
            streams[name] = encode_image_rates(codec, fitted[name], range(num_rates))  # one encoder pass
        img = fitted[name]
        data = streams[name][rate].data
        parsed = bitstream.parse(data, spec)
        _, stages, h, w = parsed.indices.shape
        full = np.zeros((1, num_rates, h, w), np.int64)  # every stage, unused ones zero (bundled.py)
        full[:, :stages] = parsed.indices
        noise = portable_noise(parsed.header.seed, (1, spec.latent_channels, h, w))
        items.append(CalibItem(name, rate, parsed.header.seed, len(data), img, full, noise))
    return items


def build_sets(codec, directory: str, samples: int, size: tuple[int, int], validation: int | None = None,
               notify: Callable[[str], None] | None = None) -> CalibrationSets:
    """Calibration items from the first `samples` images of `directory` (cycled when the folder has
    fewer, each repeat at another rate); validation items from the images after them (held out), or
    from the calibration images at the rates that come next when the folder has no more.

    `validation` (default min(samples, 8)) is the number of validation items: the accuracy-aware
    algorithm decodes the whole validation set many times, so it stays small."""
    if samples < 1:
        raise EdgecodecError(f"--samples must be at least 1, got {samples}")
    n_val = min(samples, 8) if validation is None else validation
    images = read_folder(directory, limit=samples + n_val, notify=notify)
    calib_images = images[:samples]
    held_out = images[samples:]
    calibration = make_items(codec, calib_images, size, samples)
    if held_out:
        val = make_items(codec, held_out, size, n_val)
        how = "held-out images of the same folder"
    else:
        # no images left: the calibration images again, continuing the (image, rate) sequence, so
        # the validation streams are other streams of the same pictures
        val = make_items(codec, calib_images, size, n_val, start=samples)
        how = "the calibration images at other rates (the folder has no more images)"
    source = {"directory": str(Path(directory).resolve()), "images_in_calibration": len(calib_images),
              "images_in_validation": len(held_out) or len(calib_images), "validation_source": how,
              "fit": "resize to cover HxW (Lanczos), center crop",
              "coding": "encode_image -> bitstream.parse -> portable_noise(seed); indices zero-padded to "
                        "every stage; rates cycled over the items"}
    return CalibrationSets(calibration, val, size, source)


def sets_from_images(codec, images: Sequence[tuple[str, np.ndarray]], samples: int, size: tuple[int, int],
                     validation: int = 0, source: str = "in-memory images") -> CalibrationSets:
    """The same, from images already in memory (tests, the pipeline)."""
    calibration = make_items(codec, images, size, samples)
    val = make_items(codec, images, size, validation, start=samples) if validation else list(calibration)
    return CalibrationSets(calibration, val, size,
                           {"directory": source, "images_in_calibration": min(samples, len(images)),
                            "validation_source": "the same images at other rates" if validation
                            else "the calibration items"})


def cases(items: Sequence[CalibItem]) -> list:
    """The items as harness cases (edgecodec.harness): the item itself rides along as `inputs`."""
    from edgecodec.harness import Case

    return [Case(i.name, i.rate, i.original, inputs=i) for i in items]


__all__ = ["CalibItem", "CalibrationSets", "build_sets", "fit_image", "make_items", "pair", "cases",
           "read_folder", "sets_from_images"]
