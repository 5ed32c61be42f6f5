"""What the ONNX Runtime and OpenVINO decoders share: a verified bundle, one compiled graph per
size, indices padded to every VQ stage (the graph masks the unused ones by rate), the bundle's
encode graphs, compiled on first use, and tiles of those sizes for every other image size."""

from __future__ import annotations

import time

import numpy as np

from edgecodec.errors import BundleError
from edgecodec.bundle import Bundle, open_bundle

from . import tiling
from .base import Decoder


class BundleDecoder(Decoder):
    def __init__(self, bundle: str | Bundle, sizes: list[tuple[int, int]] | None = None):
        t0 = time.perf_counter()
        self.bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
        super().__init__(self.bundle.spec)
        self.setup_timings = {"verify_ms": (time.perf_counter() - t0) * 1e3, "read_ms": 0.0, "compile_ms": 0.0}
        self._graphs: dict[tuple[int, int], object] = {}
        self._encoders: dict[tuple[int, int], object] = {}
        for g in self.bundle.manifest["graphs"]:
            if sizes is not None and tuple(g["size"]) not in {tuple(s) for s in sizes}:
                continue  # compile only what will run
            t1 = time.perf_counter()
            loaded = self.load_graph(g)
            t2 = time.perf_counter()
            self._graphs[tuple(g["size"])] = self.checked(self.compile_graph(loaded, g), g, "decode")
            t3 = time.perf_counter()
            self.setup_timings["read_ms"] += (t2 - t1) * 1e3
            self.setup_timings["compile_ms"] += (t3 - t2) * 1e3

    def grid_for(self, h: int, w: int) -> tiling.Grid | None:
        ds = self.spec.downsample
        if (h * ds, w * ds) in self._graphs:
            return None
        if not self._graphs:
            raise BundleError(f"this decoder loaded no graph of {self.bundle.root}")
        return tiling.pick_grid(h, w, [(gh // ds, gw // ds) for gh, gw in self._graphs])

    def io_shapes(self, compiled: object) -> dict[str, list[int]]:
        """Name -> static shape of every input and output of a compiled graph."""
        raise NotImplementedError

    def checked(self, compiled: object, graph: dict, role: str) -> object:
        """Refuse a graph file whose inputs and outputs are not what the stream spec and the entry's
        size call for: a file of another size or another model's geometry, whatever the manifest says."""
        h, w = graph["size"]
        spec, ds = self.spec, self.spec.downsample
        code = [1, spec.num_rates, h // ds, w // ds]
        want = ({"indices": code, "noise": [1, spec.latent_channels, h // ds, w // ds], "rate": [1],
                 "image": [1, 3, h, w]} if role == "decode" else {"image": [1, 3, h, w], "indices": code})
        have = self.io_shapes(compiled)
        if have != want:
            raise BundleError(f"bundle {self.bundle.root}: the {role} graph listed for {h}x{w} has inputs and outputs "
                              f"{have}, not the {want} this model's {h}x{w} graph has")
        stamped = self.stamped_fingerprint(compiled)  # None: exported before edgecodec 0.3
        if stamped is not None and stamped != spec.fingerprint.hex():
            raise BundleError(f"bundle {self.bundle.root}: the {role} graph listed for {h}x{w} was made from another "
                              f"model (fingerprint {stamped}, the bundle's is {spec.fingerprint.hex()})")
        return compiled

    def stamped_fingerprint(self, compiled: object) -> str | None:
        """The model fingerprint export wrote into a graph file, if any."""
        return None

    def load_graph(self, graph: dict) -> object:
        """Read the graph file(s) of a manifest entry (a decode graph or its encoder) into the
        runtime's model object."""
        raise NotImplementedError

    def compile_graph(self, model: object, graph: dict) -> object:
        """Turn a read model into something `infer` can run; `graph.get("precision")` overrides the
        bundle's (encoders are FP32 in every bundle)."""
        raise NotImplementedError

    def infer(self, compiled: object, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run a compiled graph; its one output."""
        raise NotImplementedError

    @property
    def model(self) -> dict:
        model = self.bundle.manifest["model"]
        return {**{k: model.get(k) for k in ("name", "source", "trained")}, "seeds": model.get("seeds", 1)}

    @property
    def can_encode(self) -> bool:
        return all("encoder" in g for g in self.bundle.manifest["graphs"])

    def encode_indices(self, image: np.ndarray) -> np.ndarray:
        size = tuple(image.shape[2:])
        if size not in self._encoders:
            graph = self.bundle.graph_for(*size)
            if "encoder" not in graph:
                raise BundleError(f"bundle {self.bundle.root} has no encoder (made before edgecodec 0.2): "
                                  f"export it again to encode without torch")
            compiled = self.compile_graph(self.load_graph(graph["encoder"]), graph["encoder"])
            self._encoders[size] = self.checked(compiled, graph, "encoder")
        return self.infer(self._encoders[size], {"image": np.ascontiguousarray(image, np.float32)}).astype(np.int64)

    def run_graph(self, indices: np.ndarray, noise: np.ndarray, rate: int) -> np.ndarray:
        h, w = indices.shape[2:]
        size = (h * self.spec.downsample, w * self.spec.downsample)
        compiled = self._graphs.get(size)
        if compiled is None:
            self.bundle.graph_for(*size)  # raises with the sizes this bundle has
            raise BundleError(f"the {size[0]}x{size[1]} graph of {self.bundle.root} was not loaded by this decoder")
        feeds = {"indices": self.all_stages(indices), "noise": np.ascontiguousarray(noise, np.float32),
                 "rate": np.array([rate], np.int64)}
        return self.infer(compiled, feeds)
