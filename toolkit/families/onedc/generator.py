"""OneDC's generator: x_hat (ctrl_ch @1/8) + semantic tokens -> image, in one UNet step and a VAE decode.

x_t = vae_reduction(x_hat); eps = UNet(conv_in(x_hat), t=999, tokens); x0 = (x_t - sqrt(1-abar) eps) / sqrt(abar);
image = VAE decoder(x0 / scaling_factor) with its mid-block attention on fixed latent windows. Names follow
OneDC's UNet checkpoint (`feedforward_model`): the UNet at the top level plus `conv_in.*` and `vae_reduction.*`,
with PEFT LoRA layers unmerged (merged here by `merge_lora`).
"""

from __future__ import annotations

import math
import re

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from ...errors import ModelError

_PEFT_KEY = re.compile(r"^(?P<layer>.+)\.(?:base_layer\.(?P<base>weight|bias)"
                       r"|(?P<ab>lora_A|lora_B)\.(?P<adapter>[^.]+)\.weight)$")


def merge_lora(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Fold PEFT LoRA layers into plain weights: W + (alpha / r) B A, r read from the shapes.

    Accepts a `module.` prefix on every key (DDP dumps). Any half-present layer, second adapter, unknown
    `lora_*` key or inconsistent shape raises ModelError naming the key."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    layers: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, value in state.items():
        m = _PEFT_KEY.match(key)
        if m is None:
            if key.startswith("module.") or re.search(r"(^|\.)(lora_[^.]*|base_layer)(\.|$)", key):
                raise ModelError(f"unrecognised LoRA/prefixed weight key: {key}")
            out[key] = value
            continue
        part = m["base"] or m["ab"]
        slot = layers.setdefault(m["layer"], {})
        if part in slot:
            raise ModelError(f"a second {part} for layer {m['layer']}: {key} (only one adapter can be merged)")
        slot[part] = (key, value)
    for layer, slot in layers.items():
        for part in ("weight", "lora_A", "lora_B"):
            if part not in slot:
                have = next(iter(slot.values()))[0]
                raise ModelError(f"LoRA layer {layer} has {have} but no "
                                 f"{'base_layer.weight' if part == 'weight' else part}")
        (_, w), (key_a, a), (key_b, b) = slot["weight"], slot["lora_A"], slot["lora_B"]
        r = a.shape[0]
        kernel = tuple(w.shape[2:])
        if (a.dim() != w.dim() or b.dim() != w.dim() or tuple(a.shape[1:]) != tuple(w.shape[1:])
                or tuple(b.shape[:2]) != (w.shape[0], r) or any(s != 1 for s in b.shape[2:])):
            raise ModelError(f"LoRA shapes do not fit {layer}.base_layer.weight {tuple(w.shape)}: "
                             f"{key_a} {tuple(a.shape)}, {key_b} {tuple(b.shape)}")
        # float64 so the merged weight is the exact sum rounded once; OneDC runs the layers unmerged, so
        # float32 results can only match it to rounding anyway.
        delta = b.reshape(w.shape[0], r).double() @ a.reshape(r, -1).double()
        merged = w.double() + (alpha / r) * delta.reshape(w.shape[0], -1, *kernel)
        out[f"{layer}.weight"] = merged.float()
        if "bias" in slot:
            out[f"{layer}.bias"] = slot["bias"][1]
    return out


class WindowedAttnProcessor:
    """Self-attention of a VAE mid block on non-overlapping p x p latent windows from the top-left, smaller at
    the bottom/right edges; each window is GroupNorm'd and attended on its own (OneDC's `vae_attn_patch`).

    The full windows run as one batch and each edge strip as another, so at most four calls of the wrapped
    processor; all splits depend only on the static shape, so the module traces and exports."""

    def __init__(self, patch: int, inner):
        if patch <= 0:
            raise ModelError(f"vae_attn_patch must be positive, got {patch}")
        self.patch = patch
        self.inner = inner  # the processor diffusers chose, run on each batch of windows

    def _windows(self, attn, x: torch.Tensor, temb) -> torch.Tensor:
        b, c, h, w = x.shape
        ph, pw = min(h, self.patch), min(w, self.patch)
        nh, nw = h // ph, w // pw
        x = x.reshape(b, c, nh, ph, nw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, ph, pw)
        x = self.inner(attn, x.contiguous(), temb=temb)  # the processor .view()s its input
        return x.reshape(b, nh, nw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None) -> torch.Tensor:
        if hidden_states.dim() != 4 or encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("windowed attention takes a 4-D self-attention input only")
        p = self.patch
        h, w = hidden_states.shape[2:]
        fh, fw = (h // p) * p or h, (w // p) * p or w  # full-window extent (the whole side if shorter than p)
        rows = [hidden_states[:, :, :fh]] + ([hidden_states[:, :, fh:]] if fh < h else [])
        out = []
        for band in rows:
            cols = [band[..., :fw]] + ([band[..., fw:]] if fw < w else [])
            out.append(torch.cat([self._windows(attn, part, temb) for part in cols], dim=3))
        return torch.cat(out, dim=2)


class VaeReduction(nn.Module):
    """x_hat -> x_t (4 latent channels): GN-SiLU-3x3, GN-SiLU-3x3 plus a 1x1 skip; OneDC's key names."""

    def __init__(self, ch: int, out_ch: int):
        super().__init__()
        self.blocks = nn.Sequential(
            nn.GroupNorm(32, ch, eps=1e-6), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            nn.GroupNorm(32, ch, eps=1e-6), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.short_cut = nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x) + self.short_cut(x)


def alphas_cumprod(scheduler_config: dict) -> torch.Tensor:
    """abar_t in float32 as diffusers' DDIMScheduler builds it (the table OneDC indexes)."""
    cfg = scheduler_config
    if cfg.get("beta_schedule") != "scaled_linear" or cfg.get("trained_betas") is not None \
            or cfg.get("rescale_betas_zero_snr") or cfg.get("prediction_type", "epsilon") != "epsilon":
        raise ModelError("OneDC needs a scaled_linear, epsilon-prediction scheduler config without trained "
                         f"or zero-SNR betas; got {cfg}")
    betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, cfg["num_train_timesteps"],
                           dtype=torch.float32, device="cpu") ** 2
    return torch.cumprod(1.0 - betas, dim=0)


class Generator(nn.Module):
    def __init__(self, unet_config: dict, vae_config: dict, ctrl_ch: int, vae_attn_patch: int,
                 scheduler_config: dict, timestep: int = 999):
        super().__init__()
        self.unet = UNet2DConditionModel.from_config(unet_config)
        self.unet.conv_in = nn.Conv2d(ctrl_ch, self.unet.config.block_out_channels[0], 3, padding=1)
        self.vae_reduction = VaeReduction(ctrl_ch, self.unet.config.in_channels)
        self.vae = AutoencoderKL.from_config(vae_config)
        for block in (self.vae.encoder.mid_block, self.vae.decoder.mid_block):
            for attn in block.attentions:
                if attn is not None:
                    attn.set_processor(WindowedAttnProcessor(vae_attn_patch, attn.processor))
        self.timestep = int(timestep)  # a constant of the graph; no buffer, so a model built on meta loads whole
        abar = float(alphas_cumprod(scheduler_config)[timestep])  # float32 value, used in float64 below
        # x0 = c1 x_t - c2 eps with c1 ~ c2 ~ 14.6: written as c1 (x_t - eps) + (c1 - c2) eps the cancellation
        # happens in one float32 subtraction: float32 with no float64 in the graph, within a few ulp of |x0| of
        # OneDC's float64 result (c1 x_t - c2 eps in float32 is off by up to ~1e3 ulp near 0).
        self.c1 = 1.0 / math.sqrt(abar)
        self.c2 = math.sqrt(1.0 - abar) / math.sqrt(abar)
        self.inv_scaling = 1.0 / self.vae.config.scaling_factor  # OneDC multiplies by the reciprocal
        self.scaling = self.vae.config.scaling_factor
        # Inference only. The windowing here holds in both modes; OneDC's own holds in train mode only when
        # the patch divides the latent size (its train branch is a rearrange).
        self.eval()

    def x_t(self, x_hat: torch.Tensor) -> torch.Tensor:
        return self.vae_reduction(x_hat)

    def eps(self, x_hat: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The UNet's epsilon at t = 999; its input is x_hat (through the replaced conv_in), not x_t."""
        t = torch.full((x_hat.shape[0],), self.timestep, dtype=torch.long, device=x_hat.device)
        return self.unet(x_hat, t, encoder_hidden_states=tokens, return_dict=False)[0]

    def x0(self, x_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (x_t - eps) * self.c1 + eps * (self.c1 - self.c2)

    def decode_stages(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """x0 -> vae_in, vae_post_quant, vae_out and image_float (in [0, 1]), all at the padded size."""
        vae_in = x0 * self.inv_scaling
        post = self.vae.post_quant_conv(vae_in) if self.vae.post_quant_conv is not None else vae_in
        out = self.vae.decoder(post)
        return {"vae_in": vae_in, "vae_post_quant": post, "vae_out": out,
                "image_float": out.clamp(-1.0, 1.0) * 0.5 + 0.5}

    def render(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 latent -> image in [0, 1] at the padded size (crop to H x W afterwards)."""
        return self.decode_stages(x0)["image_float"]

    def vae_encode(self, image: torch.Tensor) -> torch.Tensor:
        """Padded image in [-1, 1] -> latent mean * scaling_factor (OneDC samples; the mean is its centre)."""
        return self.vae.encode(image).latent_dist.mean * self.scaling

    def forward(self, x_hat: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.render(self.x0(self.x_t(x_hat), self.eps(x_hat, tokens)))

    @torch.no_grad()
    def intermediates(self, x_hat: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage under the reference fixture's names (image_float at the padded size)."""
        taps = {"unet_temb": self.unet.time_embedding, "unet_mid": self.unet.mid_block,
                "vae_mid": self.vae.decoder.mid_block}
        stages: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: stages.__setitem__(k, o)) for k, m in taps.items()]
        try:
            stages["x_t"] = self.x_t(x_hat)
            stages["eps"] = self.eps(x_hat, tokens)
            stages["x0"] = self.x0(stages["x_t"], stages["eps"])
            stages.update(self.decode_stages(stages["x0"]))
        finally:
            for h in hooks:
                h.remove()
        return stages


def load_generator_state(generator: Generator, unet_state_raw: dict[str, torch.Tensor],
                         vae_state: dict[str, torch.Tensor], alpha: float) -> None:
    """Load OneDC's UNet checkpoint (LoRA unmerged, plus conv_in and vae_reduction) and a diffusers VAE state.

    Strict: every missing, unexpected or mis-shaped key is named in one ModelError."""
    state = {}
    for key, value in merge_lora(unet_state_raw, alpha).items():
        state[key if key.startswith("vae_reduction.") else f"unet.{key}"] = value
    state.update({f"vae.{k}": v for k, v in vae_state.items()})
    want = generator.state_dict()
    problems = [f"missing {k}" for k in want if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in want]
    problems += [f"shape {k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
                 for k, v in want.items() if k in state and state[k].shape != v.shape]
    if problems:
        raise ModelError(f"OneDC generator weights do not fit the config ({len(problems)} problems): "
                         + "; ".join(problems))
    generator.load_state_dict(state, strict=True)
