"""The artifact bundle: a directory of graphs plus manifest.json, written atomically, verified on load.

torch-free: runtimes on edge devices read bundles with the standard library and numpy alone.

Atomicity: the bundle is assembled in a hidden sibling directory and renamed into place only after
every file and the manifest (written last, with every file's sha256) are on disk. A killed export
leaves at most a `.DIR.partial-*` directory, never a directory that looks like a bundle; the next
writer of DIR on the same machine removes those whose process is gone.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecodec.errors import BundleError
from edgecodec.imageio import write_text_atomic
from edgecodec.spec import StreamSpec

MANIFEST = "manifest.json"
FORMAT = "edgecodec-bundle"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


NOISE_RULE = {"generator": "numpy PCG64(seed).standard_normal(float32)", "shape": "1 x C x H/ds x W/ds"}


def tool_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("edgecodec", "torch", "onnx", "onnxruntime-gpu", "onnxruntime", "openvino", "nncf", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class Manifest:
    """manifest.json, the one writer of it: export and quantize both build their bundles' manifests
    here. Sections a step adds later (parity, quantization) are optional."""

    model: dict  # name, family, source, trained, seeds, fingerprint, config (JSON text)
    precision: str  # fp32, fp16 or int8
    stream_spec: dict  # StreamSpec.to_json()
    graphs: list[dict]  # per size: size, files {format key: file}, gflops, stage_gflops, inputs, outputs,
    #                     encoder {files, precision, inputs, outputs} (bundles of edgecodec >= 0.2)
    noise_rule: dict = field(default_factory=dict)
    created: str = ""
    tools: dict = field(default_factory=dict)
    quantization: dict | None = None
    parity: dict | None = None

    REQUIRED = ("model", "precision", "stream_spec", "graphs")

    @classmethod
    def for_model(cls, loaded, precision: str, graphs: list[dict], **sections) -> "Manifest":
        """A new bundle's manifest for `loaded` (a weights.LoadedModel)."""
        from edgecodec.zoo import config_to_json

        spec = loaded.codec.stream_spec()
        return cls(
            model={"name": loaded.name, "family": loaded.codec.family, "source": loaded.source,
                   "trained": loaded.trained, "seeds": loaded.seeds, "fingerprint": spec.fingerprint.hex(),
                   "config": config_to_json(loaded.codec.cfg)},
            precision=precision, stream_spec=spec.to_json(), graphs=graphs,
            noise_rule={**NOISE_RULE, "rates": spec.to_json()["rates"]},
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            tools=tool_versions(), **sections)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def check(cls, manifest: dict, where: str) -> None:
        """The fields a reader relies on, with their types; raises BundleError naming the first bad one."""
        for key in cls.REQUIRED + ("files",):
            if key not in manifest:
                raise BundleError(f"{where} lacks '{key}'")
        types = {"model": dict, "precision": str, "stream_spec": dict, "graphs": list, "files": dict}
        for key, want in types.items():
            if not isinstance(manifest[key], want):
                raise BundleError(f"{where}: '{key}' should be a {want.__name__}")
        for g in manifest["graphs"]:
            size = g.get("size") if isinstance(g, dict) else None
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
                    and isinstance(g.get("files"), dict)):
                raise BundleError(f"{where}: a graph entry lacks a valid 'size' or 'files'")
            if "encoder" in g and not (isinstance(g["encoder"], dict) and isinstance(g["encoder"].get("files"), dict)):
                raise BundleError(f"{where}: the encoder entry of a graph lacks its 'files'")


@dataclass
class Bundle:
    root: Path
    manifest: dict

    @property
    def spec(self) -> StreamSpec:
        return StreamSpec.from_json(self.manifest["stream_spec"])

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def graph_for(self, height: int, width: int) -> dict:
        """The graph entry whose (padded) size fits a stream of height x width pixels."""
        spec = self.manifest["stream_spec"]
        m = int(spec["multiple"])
        size = [-(-height // m) * m, -(-width // m) * m]
        for g in self.manifest["graphs"]:
            if list(g["size"]) == size:
                return g
        have = ", ".join(f"{g['size'][0]}x{g['size'][1]}" for g in self.manifest["graphs"])
        raise BundleError(f"bundle {self.root} has graphs for {have}; a {width}x{height} stream needs "
                          f"{size[0]}x{size[1]} (export with --size {size[0]}x{size[1]})")

    def path(self, name: str) -> Path:
        return self.root / name


class BundleWriter:
    """Collects files in a staging directory; `commit` writes the manifest and renames into place."""

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target).resolve()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.target.name}.partial-"
        for stale in self.target.parent.glob(glob.escape(prefix) + "*"):
            if _writer_gone(stale.name[len(prefix):]):
                shutil.rmtree(stale, ignore_errors=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{prefix}{_writer_tag()}-", dir=self.target.parent))

    def path(self, name: str) -> Path:
        return self.staging / name

    def write_manifest(self, manifest: Manifest) -> Bundle:
        """Checksum every staged file and write the manifest into the staging directory; the result
        can be opened (and run) like a bundle before `commit` makes it visible."""
        files = {}
        for p in sorted(self.staging.iterdir()):
            if p.name != MANIFEST and not p.name.startswith("."):
                files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest.to_json(), "files": files}
        data["checksum"] = manifest_checksum(data)
        write_text_atomic(self.staging / MANIFEST, json.dumps(data, indent=2))
        return Bundle(self.staging, data)

    def commit(self, manifest: Manifest) -> Bundle:
        manifest = self.write_manifest(manifest).manifest
        if self.target.exists():  # replace an old bundle only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.replace(self.target, old / "b")
            os.replace(self.staging, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.staging, self.target)
        return Bundle(self.target, manifest)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _writer_tag() -> str:
    """Host and process of this writer, in its staging directory's name, so a later writer can tell a
    killed export's leftovers from a concurrent one's (possibly on another host sharing the disk)."""
    host = hashlib.sha256(platform.node().encode()).hexdigest()[:8]
    return f"{host}-{os.getpid()}"


def _writer_gone(suffix: str) -> bool:
    host, _, rest = suffix.partition("-")
    pid = rest.partition("-")[0]
    if not pid.isdigit() or host != _writer_tag().partition("-")[0]:
        return False  # another host's, or a name we did not write: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without this field: an edited or damaged manifest
    (a size, the prior, a precision) no longer matches. It detects accidents, not forgery."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def open_bundle(root: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check a bundle: manifest present and well-formed, every file present with its sha256."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"no bundle directory at {root}")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root} is not a bundle (no {MANIFEST}; an interrupted export leaves none)")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not an edgecodec bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"bundle format version {manifest.get('format_version')} is not supported "
                          f"(this edgecodec reads {FORMAT_VERSION})")
    # bundles written before edgecodec 0.3 carry no checksum
    if "checksum" in manifest and manifest["checksum"] != manifest_checksum(manifest):
        raise BundleError(f"{mpath} was edited or damaged: it does not match its checksum")
    Manifest.check(manifest, str(mpath))
    if verify:
        for name, meta in manifest["files"].items():
            p = root / name
            if Path(name).name != name:
                raise BundleError(f"bundle manifest names a file outside the bundle: {name}")
            if p.is_symlink():  # a link may point anywhere: a bundle is plain files in one directory
                raise BundleError(f"bundle {root}: {name} is a symbolic link (bundles hold plain files)")
            if not p.is_file():
                raise BundleError(f"bundle {root} is incomplete: {name} is missing")
            if p.stat().st_size != meta["bytes"] or sha256_file(p) != meta["sha256"]:
                raise BundleError(f"bundle {root} was modified: {name} does not match its sha256 in the manifest")
        for g in manifest["graphs"]:
            for f in [*g["files"].values(), *g.get("encoder", {}).get("files", {}).values()]:
                if f not in manifest["files"]:
                    raise BundleError(f"bundle manifest lists graph file {f} without a checksum")
    try:
        spec = StreamSpec.from_json(manifest["stream_spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{mpath} has an unreadable stream_spec: {exc}") from None
    if spec.fingerprint.hex() != manifest["model"].get("fingerprint"):
        raise BundleError(f"{mpath}: stream_spec fingerprint does not match the model's")
    return Bundle(root, manifest)
