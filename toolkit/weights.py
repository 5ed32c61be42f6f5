"""Model files: safetensors with the config (and its family) in the metadata, loaded strictly.

`--model NAME_OR_PATH` resolves here: a named model of the zoo (`tiny`, `diffo`, ...) loads the
weights the package ships for it, or seeded random weights when none ship yet (said once, on
stderr); anything else is a path to a .safetensors file written by `save_codec`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ModelError
from .imageio import write_bytes_atomic
from .zoo import CodecModel, build_model, config_from_json, config_to_json, named_configs

PACKAGED = Path(__file__).parent / "weights"
CONFIG_KEY = "edgecodec.config"
FORMAT_KEY = "edgecodec.format"
FORMAT = "1"
# seed-search candidates an encode uses by default: a model file sets more only where its card measured a gain
SEEDS_KEY = "edgecodec.seeds"
META_BUILD_BYTES = 256 << 20  # model files above this load into a model built on the meta device


@dataclass
class LoadedModel:
    codec: CodecModel
    source: str  # file path, or "random(seed=N)"
    trained: bool
    seeds: int = 1  # default seed-search candidates (SEEDS_KEY)

    @property
    def name(self) -> str:
        return self.codec.cfg.name


def _state_for_file(codec: CodecModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items()}


def save_codec(codec: CodecModel, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write weights atomically: a killed save never leaves a truncated file under the final name."""
    from safetensors.torch import save

    meta = {CONFIG_KEY: config_to_json(codec.cfg), FORMAT_KEY: FORMAT, **(metadata or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, save(_state_for_file(codec), metadata=meta))


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                      assign: bool = False) -> None:
    """Like load_state_dict(strict=True) but names what is missing, unexpected or mis-shaped; `assign`:
    the tensors replace the module's (a module built on the meta device)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise ModelError(f"{source} does not match the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=assign)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for bad headers
        raise ModelError(f"{path} is not a readable safetensors file ({exc.__class__.__name__})") from None


def read_config(path: Path, meta: dict[str, str] | None = None):
    meta = read_metadata(path) if meta is None else meta
    if CONFIG_KEY not in meta:
        raise ModelError(f"{path} has no edgecodec config in its metadata (not an edgecodec model file)")
    try:
        return config_from_json(meta[CONFIG_KEY])
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} has an unreadable edgecodec config: {exc}") from None


def load_file(path: str | os.PathLike) -> LoadedModel:
    from safetensors.torch import load_file as st_load

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    meta = read_metadata(path)
    cfg = read_config(path, meta)
    try:
        seeds = int(meta.get(SEEDS_KEY, "1"))
    except ValueError:
        seeds = 0
    if seeds < 1:
        raise ModelError(f"{path} has an unreadable {SEEDS_KEY} ({meta[SEEDS_KEY]!r}): a positive integer")
    # a large model is built on meta and given the file's tensors: no random initialisation to throw away
    # (21 s for OneDC's 1.4 G parameters); a small one is built as usual (meta's first use costs ~1 s)
    on_meta = path.stat().st_size > META_BUILD_BYTES
    codec = build_model(cfg, device="meta" if on_meta else None)
    try:
        state = st_load(str(path))
    except Exception as exc:
        raise ModelError(f"{path} could not be read: {exc}") from None
    load_state_strict(codec, state, str(path), assign=on_meta)
    for name, t in [*codec.named_parameters(), *codec.named_buffers()] if on_meta else ():
        if t.is_meta:  # a module with state outside its state_dict: a bug of the family, not of the file
            raise RuntimeError(f"{cfg.name}: {name} is not in the state dict, so the model cannot load on meta")
        # into the allocator's own aligned memory, as a copy into a built model is: kernels take other
        # vector paths on the file's offsets (a few pixels of tiny-edge's decode moved by one level)
        t.data = t.data.clone()
    return LoadedModel(codec.eval(), str(path), trained=True, seeds=seeds)


def packaged_weights(name: str) -> Path | None:
    path = PACKAGED / f"{name}.safetensors"
    return path if path.is_file() else None


_notified: set[str] = set()


def load_model(name_or_path: str = "tiny", quiet: bool = False) -> LoadedModel:
    configs = named_configs()
    if name_or_path in configs:
        shipped = packaged_weights(name_or_path)
        if shipped is not None:
            return load_file(shipped)
        cfg = configs[name_or_path]
        if not quiet and name_or_path not in _notified:
            _notified.add(name_or_path)
            print(f"edgecodec: note: model '{name_or_path}' has no trained weights here; "
                  f"using seeded random weights (seed {cfg.init_seed}), so decoded images are not meaningful",
                  file=sys.stderr)
        model = build_model(cfg)
        teacher = getattr(cfg, "teacher_name", None)  # a student: its streams are its teacher's
        if teacher in configs:
            model.adopt(load_model(teacher, quiet=True).codec)
        return LoadedModel(model, f"random(seed={cfg.init_seed})", trained=False)
    if name_or_path.endswith(".safetensors") or os.path.sep in name_or_path or Path(name_or_path).exists():
        return load_file(name_or_path)
    raise ModelError(f"unknown model '{name_or_path}': use one of {', '.join(configs)} or a .safetensors path")
