"""`edgecodec import diffo`: DiffO's trainer files (config.yaml + three checkpoints) -> an edgecodec model file.

Every size comes from DiffO's config file (model / autoencoder / GT_encoder params and the diffusion
schedule), never from the released numbers, so reduced and future configs import too. The rules that
DiffO's code applies on top of the config are reproduced here:

- window size per UNet level: `final_window_size` where the level has exactly 640 channels, else
  `window_size` (DiffO's `models/unet.py` tests `ch != 640`); the middle block uses `final_window_size`;
- the one operating point, from ResShift's exponential schedule: sqrt(eta) grows from
  min(min_noise_level / kappa, min_noise_level) to etas_end over `steps` with exponent `power`;
  sigma = float32(kappa * sqrt(eta_T)), t = T - 1, input scale 1 / sqrt(float32(eta_T) * kappa^2 + 1).

Loading is strict: every tensor the model needs must be present with its shape. Accepted and ignored,
by name and counted: the GT model's training loss (`loss.*`), the GT codebook (decoding never
re-quantizes), the stored Swin `attn_mask` buffers (per-shape constants, rebuilt here), the latent
codebook's EMA statistics, and a `module.` prefix from multi-GPU training. DiffO transmits no entropy
model: the prior is uniform unless `--prior-images` counts it on real images.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from edgecodec.families.diffo.config import AutoencoderConfig, CodecConfig, DenoiserConfig, RateConfig
from edgecodec.errors import ModelError

# (file role, our prefix) for DiffO's three files
PREFIXES = {"unet": "denoiser.", "latent_vq": "latent_vq.", "gt_vq": "pixel_vq."}
WIDE_LEVEL = 640  # DiffO's unet.py: the level with exactly this many channels takes final_window_size


def read_yaml(path: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"--config {path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"--config {path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ModelError(f"--config {path}: not a DiffO config (no mapping at the top)")
    return data


def _get(d: dict, path: str):
    node = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ModelError(f"DiffO config lacks '{path}'")
        node = node[part]
    return node


def schedule(diffusion: dict) -> dict:
    """ResShift's exponential schedule -> DiffO's one-step operating point (float32 as DiffO computes it)."""
    steps = int(diffusion["steps"])
    kappa = float(diffusion["kappa"])
    etas_end = float(diffusion["etas_end"])
    min_noise = float(diffusion["min_noise_level"])
    power = float(diffusion.get("schedule_kwargs", {}).get("power", 0.3))
    if diffusion.get("schedule_name", "exponential") != "exponential" or steps < 2:
        raise ModelError("only DiffO's exponential ResShift schedule with at least 2 steps is supported")
    start = min(min_noise / kappa, min_noise)
    increaser = math.exp(1 / (steps - 1) * math.log(etas_end / start))
    exponent = np.linspace(0, 1, steps, endpoint=True) ** power * (steps - 1)
    sqrt_etas = np.power(np.full(steps, increaser), exponent) * start
    eta_t = sqrt_etas[-1] ** 2
    sigma = float(np.float32(kappa * sqrt_etas[-1]))
    scale = float(np.sqrt(np.float32(eta_t) * np.float32(kappa) ** 2 + np.float32(1.0), dtype=np.float32))
    return {"sigma": sigma, "timestep": steps - 1, "input_std": scale, "sqrt_etas": sqrt_etas.tolist(),
            "kappa": kappa}


def _autoencoder(params: dict, io_channels: int) -> AutoencoderConfig:
    dd = params["ddconfig"]
    res = int(dd["resolution"])
    mult = tuple(int(m) for m in dd["ch_mult"])
    attn = tuple(level for level in range(len(mult)) if res // 2**level in set(dd.get("attn_resolutions", [])))
    return AutoencoderConfig(ch=int(dd["ch"]), ch_mult=mult, num_res_blocks=int(dd["num_res_blocks"]),
                             attn_levels=attn, io_channels=io_channels, z_channels=int(dd["z_channels"]))


def config_from_diffo(cfg: dict, name: str) -> tuple[CodecConfig, dict]:
    """(our config, the schedule's operating point) from DiffO's parsed config.yaml."""
    m = _get(cfg, "model.params")
    a = _get(cfg, "autoencoder.params")
    g = _get(cfg, "GT_encoder.params")
    diffusion = _get(cfg, "diffusion.params")
    mult = tuple(int(v) for v in m["channel_mult"])
    mc = int(m["model_channels"])
    blocks = m["num_res_blocks"]
    blocks = [int(blocks)] * len(mult) if isinstance(blocks, int) else [int(b) for b in blocks]
    image_size = int(m["image_size"])
    swin_levels = {level for level in range(len(mult))
                   if 2**level in {image_size // int(r) for r in m.get("attention_resolutions", [])}}
    unsupported = []
    if len(set(blocks)) != 1:
        unsupported.append(f"num_res_blocks {blocks} (one count for every level)")
    if swin_levels != set(range(len(mult))):
        unsupported.append(f"attention_resolutions {m.get('attention_resolutions')} (Swin blocks at every level)")
    for key, want in (("use_scale_shift_norm", True), ("resblock_updown", False), ("conv_resample", True),
                      ("cond_lq", True)):
        if bool(m.get(key, want)) != want:
            unsupported.append(f"{key}={m.get(key)}")
    if diffusion.get("predict_type", "xstart") != "xstart":
        unsupported.append(f"predict_type {diffusion.get('predict_type')} (x0 prediction)")
    if unsupported:
        raise ModelError("this DiffO config is outside what edgecodec imports: " + "; ".join(unsupported))
    latent = int(m["out_channels"])
    windows = tuple(int(m["final_window_size"]) if mc * k == WIDE_LEVEL else int(m["window_size"]) for k in mult)
    denoiser = DenoiserConfig(model_channels=mc, channel_mult=mult, num_res_blocks=blocks[0],
                              cond_channels=int(m["in_channels"]) - latent, swin_embed_dim=int(m["swin_embed_dim"]),
                              swin_head_channels=int(m["num_head_channels"]), swin_depth=int(m["swin_depth"]),
                              window_sizes=windows, mlp_ratio=float(m.get("mlp_ratio", 4)),
                              middle_window=int(m["final_window_size"]))
    point = schedule(diffusion)
    codec = CodecConfig(name=name, pixel=_autoencoder(g, 3), latent=_autoencoder(a, int(a["ddconfig"]["in_channels"])),
                        denoiser=denoiser,
                        rate=RateConfig(sigma_max=point["sigma"], decay=1.0, t_max=float(point["timestep"])),
                        codebook_size=int(a["n_embed"]), code_dim=int(a["embed_dim"]), residual_stages=0)
    if codec.pixel.z_channels != latent or codec.code_dim != latent:
        raise ModelError(f"DiffO config: latent width {latent} differs from the autoencoders' z/embed dims")
    return codec, point


# --- the checkpoints --------------------------------------------------------------------------------

def read_state(path: str, role: str) -> dict[str, torch.Tensor]:
    """A DiffO checkpoint as a flat state_dict: the UNet file is a raw OrderedDict, the VQ files wrap it
    in {'iters_start', 'log_step', 'log_step_img', 'state_dict'}."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{role} checkpoint {path}: no such file")
    try:
        data = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle and zip errors of many kinds)
        raise ModelError(f"{path} is not a readable torch checkpoint ({exc.__class__.__name__})") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(torch.is_tensor(v) for v in data.values()):
        raise ModelError(f"{path} does not hold a state_dict of tensors")
    return dict(data)


def ignored(role: str, key: str) -> str | None:
    """Why a checkpoint key is accepted without being loaded, or None when it must load."""
    if key.endswith(".attn_mask"):
        return "Swin attn_mask buffers (per-shape constants, rebuilt for each graph size)"
    if role == "gt_vq" and key.startswith("loss."):
        return "the GT model's training loss (LPIPS + discriminator)"
    if role == "gt_vq" and key.startswith("quantize."):
        return "the GT codebook (decoding never re-quantizes)"
    if role == "latent_vq" and key in ("quantize.embedding.cluster_size", "quantize.embedding.embed_avg"):
        return "the latent codebook's EMA statistics"
    return None


def map_state(files: dict[str, dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Our state_dict from DiffO's three, and how many keys were ignored, by reason."""
    state, skipped = {}, {}
    for role, sd in files.items():
        for key, value in sd.items():
            if key.startswith("module."):
                key = key[len("module."):]
                skipped["'module.' prefixes removed (multi-GPU training)"] = \
                    skipped.get("'module.' prefixes removed (multi-GPU training)", 0) + 1
            why = ignored(role, key)
            if why:
                skipped[why] = skipped.get(why, 0) + 1
                continue
            state[PREFIXES[role] + key] = value
    return state, skipped


def import_diffo(config: str, unet: str, latent_vq: str, pixel_vq: str, name: str,
                 prior_images: str | None = None, say=lambda m: None):
    """-> (LoadedModel, report dict)."""
    from edgecodec.weights import LoadedModel, load_state_strict
    from edgecodec.zoo import build_model

    cfg, point = config_from_diffo(read_yaml(config), name)
    files = {"unet": read_state(unet, "UNet"), "latent_vq": read_state(latent_vq, "latent VQ"),
             "gt_vq": read_state(pixel_vq, "GT VQ")}
    state, skipped = map_state(files)
    model = build_model(cfg)
    prior_key = "latent_vq.quantize.prior"  # ours: DiffO transmits no entropy model
    state[prior_key] = model.state_dict()[prior_key]
    load_state_strict(model, state, "the DiffO checkpoints")
    prior = "uniform (DiffO transmits no entropy model)"
    if prior_images:
        prior = count_prior(model, prior_images, say)
    report = {"config": config, "files": {"unet": unet, "latent_vq": latent_vq, "gt_vq": pixel_vq},
              "loaded_tensors": len(state) - 1, "ignored": skipped, "operating_point": point, "prior": prior,
              "window_sizes": list(cfg.denoiser.window_sizes), "middle_window": cfg.denoiser.middle_window,
              "image_multiple": cfg.multiple}
    return LoadedModel(model.eval(), f"DiffO checkpoints ({Path(unet).name})", trained=True), report


@torch.no_grad()
def count_prior(model, folder: str, say) -> str:
    """Index histogram (+1) of the images in `folder`: a static entropy model that travels with the weights."""
    from edgecodec.frames import to_model_input
    from edgecodec.imageio import list_images, load_image

    paths = list_images(folder)
    if not paths:
        raise ModelError(f"--prior-images {folder}: no images")
    counts = torch.ones_like(model.quantizer.prior)
    for p in paths:
        x = torch.from_numpy(to_model_input(load_image(p, notify=say), model.cfg.multiple))
        idx = model.encode_indices(x, model.cfg.num_rates - 1)
        for s in range(idx.shape[1]):
            counts[s] += torch.bincount(idx[:, s].reshape(-1), minlength=counts.shape[1])
    model.quantizer.prior.copy_(counts)
    probs = counts.double() / counts.sum(1, keepdim=True)
    bits = float(-(probs * probs.log2()).sum(1).mean())
    return f"index histogram of {len(paths)} images in {folder} ({bits:.2f} bits per index)"


__all__ = ["config_from_diffo", "import_diffo", "map_state", "read_state", "schedule"]
