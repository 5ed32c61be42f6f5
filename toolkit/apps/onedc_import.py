"""`edgecodec import onedc`: OneDC's two checkpoint files (+ the VAE and configs they need) -> one edgecodec
model file that carries its config, so `--model FILE` works everywhere.

What the files say is read from them: every codec width from the codec file's shapes, x_hat's width from both
files (they must agree), the LoRA rank from the LoRA shapes. What they do not say comes from flags with OneDC's
released values as defaults: the UNet config (required: its block layout is not in the shapes), LoRA alpha 8,
the VAE's attention patch 16, SD-1.5's scheduler. Loading is strict: every missing, unexpected or mis-shaped
tensor is named. PEFT LoRA layers (`base_layer`, `lora_A`, `lora_B`) are merged, W + alpha/r B A, and a
`module.` prefix (DDP dumps) is accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgecodec.errors import ModelError
from edgecodec.families.onedc import config as onedc_config
from edgecodec.families.onedc.nets import widths_from_state
from edgecodec.weights import LoadedModel, load_state_strict


def read_json(path: str | Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{what} {path} is not readable JSON ({exc.__class__.__name__})") from None


def read_tensors(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ModelError(f"{what} not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for bad files
        raise ModelError(f"{what} {path} is not a readable safetensors file ({exc.__class__.__name__})") from None
    if state and all(k.startswith("module.") for k in state):  # a DDP dump
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v.float() for k, v in state.items()}


def vae_files(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A diffusers AutoencoderKL folder: config.json + diffusion_pytorch_model.safetensors."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelError(f"--vae {directory}: not a folder (want diffusers' AutoencoderKL folder: config.json and "
                         "diffusion_pytorch_model.safetensors)")
    weights = d / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise ModelError(f"--vae {directory}: no diffusion_pytorch_model.safetensors (a .bin is not read: convert "
                         "it with diffusers' save_pretrained(safe_serialization=True))")
    return read_json(d / "config.json", "VAE config"), read_tensors(weights, "VAE weights")


def import_onedc(unet: str, codec: str, vae: str, unet_config: str, name: str,
                 lora_alpha: float = onedc_config.LORA_ALPHA, vae_attn_patch: int = onedc_config.VAE_ATTN_PATCH,
                 scheduler_config: str | None = None, z_only: bool = False) -> tuple[LoadedModel, dict]:
    from edgecodec.families.onedc.generator import alphas_cumprod, merge_lora
    from edgecodec.zoo import build_model

    codec_state = read_tensors(codec, "codec checkpoint")
    unet_state = merge_lora(read_tensors(unet, "UNet checkpoint"), lora_alpha)
    vae_cfg, vae_state = vae_files(vae)
    try:
        widths = widths_from_state(codec_state)
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{codec}: not OneDC's codec file ({exc})") from None
    conv_in = unet_state.get("conv_in.weight")
    if conv_in is None or conv_in.shape[1] != widths.ctrl_ch:
        got = "none" if conv_in is None else f"{conv_in.shape[1]} input channels"
        raise ModelError(f"{unet}: conv_in.weight should take the codec's x_hat ({widths.ctrl_ch} channels), "
                         f"found {got}")
    scheduler = (read_json(scheduler_config, "scheduler config") if scheduler_config
                 else dict(onedc_config.SD15_SCHEDULER))
    alphas_cumprod(scheduler)  # refuses a schedule OneDC's x0 formula does not fit
    drop = ("_class_name", "_diffusers_version", "_name_or_path")
    cfg = onedc_config.OneDCConfig(
        name=name, codec=widths.to_dict(),
        unet={k: v for k, v in read_json(unet_config, "UNet config").items() if k not in drop},
        vae={k: v for k, v in vae_cfg.items() if k not in drop},
        scheduler={k: scheduler[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps")},
        vae_attn_patch=int(vae_attn_patch), lora_alpha=float(lora_alpha), z_only=z_only,
        pad_mode="reflect" if z_only else "edge")
    try:
        model = build_model(cfg, device="meta")
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"the configs do not build OneDC's model: {exc}") from None
    state = {f"nets.{k}": v for k, v in codec_state.items()}
    state.update({f"gen.{k}" if k.startswith("vae_reduction.") else f"gen.unet.{k}": v for k, v in unet_state.items()})
    state.update({f"gen.vae.{k}": v for k, v in vae_state.items()})
    load_state_strict(model, state, "the OneDC checkpoints", assign=True)
    report = {"files": {"unet": unet, "codec": codec, "vae": vae, "unet_config": unet_config,
                        "scheduler_config": scheduler_config or "SD-1.5 (built in)"},
              "loaded_tensors": len(state), "codec_widths": widths.to_dict(), "lora_alpha": lora_alpha,
              "vae_attn_patch": vae_attn_patch, "z_only": z_only,
              "decode_parameters": sum(p.numel() for m in model.decode_side_modules() for p in m.parameters())}
    return LoadedModel(model.eval(), f"OneDC checkpoints ({Path(unet).name}, {Path(codec).name})", trained=True), report


__all__ = ["import_onedc", "read_json", "read_tensors", "vae_files"]
