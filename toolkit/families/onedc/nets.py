"""OneDC's codec networks (everything in its `model_1.safetensors`), float32 torch modules.

Written from the architecture facts of OneDC (github.com/onedc-codec/onedc @ c52af53, `IntraNoAR` in
`src/models/sd15_onedc_codec_stage1/codec_module.py`); submodule and parameter names equal the checkpoint keys,
so `OneDCNets(widths_from_state(state)).load_state_dict(state, strict=True)` loads a released or reduced
checkpoint.

Scales: the image is padded to multiples of 64; x_hat and the VAE latent are at 1/8, y and the priors at 1/16,
z, z_semantic, the semantic map and the tokens at 1/64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .blocks import (AttnBlock, DepthConvBlock4, DownBlock, MidBlock, ResidualBlockUpsample, ResnetBlock,
                     UpBlock, unet_norm)

ENCODER_TIMESTEP = 999  # OneDC's encoder UNet always runs at t = 999
PATCH = 8  # the encoder's pixel embedding is a stride-8 8x8 conv: 1/8 scale, like the VAE latent
# OneDC builds its encoder UNet with these fixed block types (diffusers AttnDownBlock2D/DownBlock2D, ...)
DOWN_ATTENTION = (True, True, False)
UP_ATTENTION = (True, True, False)


@dataclass(frozen=True)
class CodecWidths:
    """Every width of OneDC's codec networks. The defaults are fixed by OneDC's code."""

    bottleneck_ch: int  # N: y channels at 1/16; the prior has 2N (scales, means)
    internal_ch: int  # g_s width at 1/16 (half of it at 1/8) and the hyper encoder's width
    unet_ch_config: tuple[int, int, int]  # encoder UNet widths; [0]: y path at 1/16, [-1]: semantic width
    ctrl_ch: int  # x_hat channels (the denoising UNet's input)
    z_ch: int = 7  # len(z_fsq_levels)
    cond_ch: int = 4  # VAE latent channels, the encoder's condition
    pix_emb_ch: int = 192  # encoder pixel embedding (hard-coded in OneDC)
    pix_fusion_ch: int = 320  # encoder width at 1/8 (hard-coded in OneDC)
    layers_per_block: int = 2  # encoder UNet resnets per down block (one more per up block)

    def __post_init__(self):
        object.__setattr__(self, "unet_ch_config", tuple(self.unet_ch_config))
        if len(self.unet_ch_config) != len(DOWN_ATTENTION):
            raise ValueError(f"OneDC's encoder UNet has {len(DOWN_ATTENTION)} blocks, got {self.unet_ch_config}")
        if self.bottleneck_ch % 4:
            raise ValueError(f"bottleneck_ch must split into the four prior passes' channel groups, got "
                             f"{self.bottleneck_ch}")

    @property
    def semantic_ch(self) -> int:
        """Token width (= the denoising UNet's cross-attention width)."""
        return self.unet_ch_config[-1]

    @classmethod
    def released(cls) -> CodecWidths:
        """OneDC's released models (`src/config_inference.yaml`, ctrl_ch 320 in the model builder)."""
        return cls(bottleneck_ch=128, internal_ch=512, unet_ch_config=(512, 768, 768), ctrl_ch=320)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unet_ch_config"] = list(self.unet_ch_config)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CodecWidths:
        return cls(**{**d, "unet_ch_config": tuple(d["unet_ch_config"])})


def widths_from_state(state: dict[str, torch.Tensor]) -> CodecWidths:
    """Read every width from the tensor shapes of a OneDC codec state dict (bare keys)."""

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise KeyError(f"not a OneDC codec state dict: {key!r} is missing")
        return state[key].shape

    unet = []
    while f"enc.unet.down_blocks.{len(unet)}.resnets.0.conv2.weight" in state:
        unet.append(shape(f"enc.unet.down_blocks.{len(unet)}.resnets.0.conv2.weight")[0])
    layers = 0
    while f"enc.unet.down_blocks.0.resnets.{layers}.conv2.weight" in state:
        layers += 1
    pix_emb_ch = shape("enc.pix_emb.weight")[0]
    pix_fusion_ch, fusion_in = shape("enc.pix_fusion.weight")[:2]
    widths = CodecWidths(
        bottleneck_ch=shape("y_spatial_prior_reduction.weight")[0],
        internal_ch=shape("dec.trans_coding.0.block.0.conv2.weight")[0],
        unet_ch_config=tuple(unet),
        ctrl_ch=shape("dec.conv_out.block.0.conv2.weight")[0],
        z_ch=shape("hyper_dec.feat_in.0.weight")[1],
        cond_ch=fusion_in - pix_emb_ch,
        pix_emb_ch=pix_emb_ch,
        pix_fusion_ch=pix_fusion_ch,
        layers_per_block=layers,
    )
    sem = shape("semantic_adaptor.to_semantic.0.block.0.conv2.weight")[0]
    if sem != widths.semantic_ch:
        raise ValueError(f"semantic adaptor width {sem} != encoder UNet's last width {widths.semantic_ch}")
    return widths


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding as diffusers' Timesteps(flip_sin_to_cos=True, shift 0): [cos, sin], float32."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    freqs = t[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(freqs), torch.sin(freqs)], dim=-1)


class TimeEmbedding(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_ch, out_ch)
        self.linear_2 = nn.Linear(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(nn.functional.silu(self.linear_1(x)))


class EncoderUNet(nn.Module):
    """OneDC's encoder UNet: a diffusers UNet2DModel whose conv_in is replaced by three ResnetBlocks and a stride-2
    conv (1/8 -> 1/16), run at t = 999. Returns (UNet output at 1/16, mid-block output at 1/64)."""

    def __init__(self, w: CodecWidths):
        super().__init__()
        ch = w.unet_ch_config
        temb_ch = ch[0] * 4
        self.conv_in = nn.Sequential(ResnetBlock(w.pix_fusion_ch, ch[0]), ResnetBlock(ch[0]), ResnetBlock(ch[0]),
                                     nn.Conv2d(ch[0], ch[0], 3, stride=2, padding=1))
        self.time_embedding = TimeEmbedding(ch[0], temb_ch)
        last = len(ch) - 1
        skip_chs = [ch[0]]  # widths of the skips the down path leaves, in order
        self.down_blocks = nn.ModuleList()
        for i, out_ch in enumerate(ch):
            self.down_blocks.append(DownBlock(ch[max(i - 1, 0)], out_ch, temb_ch, w.layers_per_block,
                                              DOWN_ATTENTION[i], downsample=i < last))
            skip_chs += [out_ch] * (w.layers_per_block + (i < last))
        self.mid_block = MidBlock(ch[-1], temb_ch)
        self.up_blocks = nn.ModuleList()
        for i, out_ch in enumerate(reversed(ch)):
            consumed = [skip_chs.pop() for _ in range(w.layers_per_block + 1)]
            self.up_blocks.append(UpBlock(ch[last - max(i - 1, 0)], out_ch, consumed, temb_ch, UP_ATTENTION[i],
                                          upsample=i < last))
        self.conv_norm_out = unet_norm(ch[0])
        self.conv_out = nn.Conv2d(ch[0], ch[0], 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full((x.shape[0],), ENCODER_TIMESTEP, dtype=torch.long, device=x.device)
        temb = self.time_embedding(timestep_embedding(t, self.time_embedding.linear_1.in_features).to(x.dtype))
        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb)
            skips += block_skips
        x = self.mid_block(x, temb)
        sem = x
        for block in self.up_blocks:
            x = block(x, skips, temb)
        return self.conv_out(nn.functional.silu(self.conv_norm_out(x))), sem


class Encoder(nn.Module):
    """Analysis g_a: (padded image, VAE latent) -> (y at 1/16, encoder semantics at 1/64)."""

    def __init__(self, w: CodecWidths):
        super().__init__()
        ch16 = w.unet_ch_config[0]
        self.pix_emb = nn.Conv2d(3, w.pix_emb_ch, PATCH, stride=PATCH)
        self.pix_fusion = nn.Conv2d(w.pix_emb_ch + w.cond_ch, w.pix_fusion_ch, 1)
        self.unet = EncoderUNet(w)
        self.trans_coding = nn.Sequential(ResnetBlock(ch16), AttnBlock(ch16), ResnetBlock(ch16),
                                          DepthConvBlock4(ch16, ch16), DepthConvBlock4(ch16, w.bottleneck_ch))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, sem = self.unet(self.pix_fusion(torch.cat([self.pix_emb(x), cond], dim=1)))
        return self.trans_coding(y), sem


class Decoder(nn.Module):
    """Synthesis g_s: (y_hat at 1/16, semantic map at 1/64) -> x_hat (ctrl_ch at 1/8)."""

    def __init__(self, w: CodecWidths):
        super().__init__()
        ch16, ch8 = w.internal_ch, w.internal_ch // 2
        self.trans_coding = nn.Sequential(DepthConvBlock4(w.bottleneck_ch, ch16), DepthConvBlock4(ch16, ch16))
        self.blocks = nn.Sequential(*(ResnetBlock(ch16) for _ in range(3)),
                                    nn.Conv2d(ch16, ch16 * 4, 1), nn.PixelShuffle(2),
                                    nn.Conv2d(ch16, ch8, 3, padding=1),
                                    *(ResnetBlock(ch8) for _ in range(3)))
        self.sem_up = nn.Sequential(ResidualBlockUpsample(w.semantic_ch, ch16), DepthConvBlock4(ch16, ch16),
                                    ResidualBlockUpsample(ch16, ch8), DepthConvBlock4(ch8, ch8),
                                    ResidualBlockUpsample(ch8, ch8))
        self.conv_out = DepthConvBlock4(ch8 * 2, w.ctrl_ch)

    def forward(self, y_hat: torch.Tensor, semantic_map: torch.Tensor) -> torch.Tensor:
        y = self.blocks(self.trans_coding(y_hat))
        return self.conv_out(torch.cat([y, self.sem_up(semantic_map)], dim=1))


class HyperEncoder(nn.Module):
    """h_a: (y at 1/16, encoder semantics at 1/64) -> z (z_ch at 1/64), before FSQ."""

    def __init__(self, w: CodecWidths):
        super().__init__()
        n, sem, internal = w.bottleneck_ch, w.semantic_ch, w.internal_ch
        self.y_trans_coding = nn.Sequential(DepthConvBlock4(n, n), nn.Conv2d(n, n, 3, stride=2, padding=1),
                                            DepthConvBlock4(n, n), nn.Conv2d(n, n, 3, stride=2, padding=1))
        self.fusion = nn.Sequential(DepthConvBlock4(n + sem, sem), AttnBlock(sem),
                                    DepthConvBlock4(sem, internal), AttnBlock(internal),
                                    DepthConvBlock4(internal, internal), nn.Conv2d(internal, w.z_ch, 1))

    def forward(self, y: torch.Tensor, sem: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([self.y_trans_coding(y), sem], dim=1))


class HyperDecoder(nn.Module):
    """h_s: z_hat -> (z_semantic at 1/64, z_entropy at 1/16), both N channels."""

    def __init__(self, w: CodecWidths):
        super().__init__()
        n = w.bottleneck_ch
        self.feat_in = nn.Sequential(nn.Conv2d(w.z_ch, n, 1), nn.LeakyReLU(0.01))
        self.to_entropy = nn.Sequential(DepthConvBlock4(n, n), ResidualBlockUpsample(n, n), DepthConvBlock4(n, n),
                                        ResidualBlockUpsample(n, n), DepthConvBlock4(n, n))

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_semantic = self.feat_in(z_hat)
        return z_semantic, self.to_entropy(z_semantic)


class SemanticAdaptor(nn.Module):
    def __init__(self, w: CodecWidths):
        super().__init__()
        sem = w.semantic_ch

        def res_attn_attn() -> list[nn.Module]:
            return [ResnetBlock(sem), AttnBlock(sem), AttnBlock(sem)]

        self.to_semantic = nn.Sequential(DepthConvBlock4(w.bottleneck_ch, sem), *res_attn_attn(), *res_attn_attn(),
                                         DepthConvBlock4(sem, sem))

    def forward(self, z_semantic: torch.Tensor) -> torch.Tensor:
        return self.to_semantic(z_semantic)


class OneDCNets(nn.Module):
    """All of OneDC's codec networks; `load_state_dict(model_1.safetensors, strict=True)` fits.

    Encode: x (the image as ToTensor() * 2 - 1, float32 in [-1, 1], replicate-padded at the bottom/right to
    multiples of 64) and x_latent (the SD VAE's latent_dist sample of that padded image times 0.18215) ->
    analysis -> (y, sem); hyper_analysis(y, sem) -> z; FSQ (outside) -> z_hat.
    Decode: hyper(z_hat) -> (z_semantic, params); pass 0 uses split(params); common(params) feeds
    spatial_prior(k, y_hat so far, common) for passes k = 1, 2, 3; tokens(z_semantic) -> (semantic_map, tokens);
    synthesis(y_hat, semantic_map) -> x_hat.
    """

    def __init__(self, widths: CodecWidths):
        super().__init__()
        self.widths = widths
        n2 = widths.bottleneck_ch * 2
        self.enc = Encoder(widths)
        self.dec = Decoder(widths)
        self.semantic_adaptor = SemanticAdaptor(widths)
        self.hyper_enc = HyperEncoder(widths)
        self.hyper_dec = HyperDecoder(widths)
        self.y_prior_fusion = nn.Sequential(DepthConvBlock4(widths.bottleneck_ch, n2), DepthConvBlock4(n2, n2))
        self.y_spatial_prior_reduction = nn.Conv2d(n2, widths.bottleneck_ch, 1)
        self.y_spatial_prior_adaptor_1 = DepthConvBlock4(n2, n2)
        self.y_spatial_prior_adaptor_2 = DepthConvBlock4(n2, n2)
        self.y_spatial_prior_adaptor_3 = DepthConvBlock4(n2, n2)
        self.y_spatial_prior = nn.Sequential(*(DepthConvBlock4(n2, n2) for _ in range(3)))

    @staticmethod
    def split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """2N prior channels -> (scales: 0..N-1, means: N..2N-1); scales are raw conv outputs."""
        scales, means = params.chunk(2, 1)
        return scales, means

    def analysis(self, x: torch.Tensor, x_latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(padded image in [-1, 1], VAE latent at 1/8) -> (y: N at 1/16, sem: semantic_ch at 1/64)."""
        return self.enc(x, x_latent)

    def hyper_analysis(self, y: torch.Tensor, sem: torch.Tensor) -> torch.Tensor:
        """(y, encoder semantics) -> z (z_ch at 1/64), before FSQ."""
        return self.hyper_enc(y, sem)

    def hyper(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FSQ codes -> (z_semantic: N at 1/64, params: y_prior_fusion output, 2N at 1/16)."""
        z_semantic, z_entropy = self.hyper_dec(z_hat)
        return z_semantic, self.y_prior_fusion(z_entropy)

    def common(self, params: torch.Tensor) -> torch.Tensor:
        return self.y_spatial_prior_reduction(params)

    def spatial_prior(self, k: int, y_hat: torch.Tensor, common_params: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior of pass k (1..3) from y_hat decoded so far (zeros where not yet decoded)."""
        if k not in (1, 2, 3):
            raise ValueError(f"spatial prior passes are 1, 2, 3, got {k}")
        adaptor = getattr(self, f"y_spatial_prior_adaptor_{k}")
        return self.split(self.y_spatial_prior(adaptor(torch.cat([y_hat, common_params], dim=1))))

    def tokens(self, z_semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_semantic -> (semantic map at 1/64, tokens (B, h64 * w64, semantic_ch) in row-major order): the
        denoising UNet's encoder_hidden_states."""
        semantic_map = self.semantic_adaptor(z_semantic)
        return semantic_map, semantic_map.flatten(2).transpose(1, 2)

    def synthesis(self, y_hat: torch.Tensor, semantic_map: torch.Tensor) -> torch.Tensor:
        """(y_hat at 1/16, semantic map at 1/64 - not z_semantic) -> x_hat (ctrl_ch at 1/8)."""
        return self.dec(y_hat, semantic_map)
