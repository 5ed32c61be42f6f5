"""Training recipe for the codec family, in the stages the method needs.

  1. pixel     the pixel autoencoder (image <-> continuous latent at 1/16), MSE + L1 in pixels;
               at the end the latent is rescaled to unit variance (folded into the 1x1 convs),
               so the rate table's sigma means the same thing for every model.
  2. latent    the latent VQ model: latent encoder -> base + residual VQ (EMA k-means codebooks,
               dead-code restarts, straight-through) -> latent decoder, trained on every rate's
               prefix sum at once plus the unquantized code (without that term the encoder learns a
               code the decoder cannot invert, which caps the top rates); then the entropy prior =
               index histograms of the train set.
  3. denoiser  the one-step Swin-UNet with the rate-aware noise of every rate (a random rate per
               sample), on the latent MSE to the clean latent.
  4. joint     the denoiser jointly with the pixel decoder, on pixel MSE plus a latent MSE.

The pixel encoder is frozen after stage 1, so stages 2 and 3 read crops of a latent cache (every
training image and its mirror image encoded once) instead of encoding pixels every step, so their
batches hold 4x the latent cells of the 0.2 recipe at less cost. The pixel-resolution stages (1 and 4)
run under bfloat16 autocast where the CPU has it (weights, optimizer and losses stay float32; the code
itself is always searched in float32, as the encoder does).

`init` starts from a trained model of the same config and `stages` runs a subset of the stages, so a
later stage's recipe can be redone on a finished run without training the autoencoder again.

Resume is exact: the checkpoint holds weights, optimizer, EMA codebook statistics, the data
sampler's and torch's RNG states, and the step. Only data on disk is read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgecodec.families.diffo.codec import Codec
from edgecodec.errors import EdgecodecError
from edgecodec.frames import to_model_input
from edgecodec.imageio import list_images, load_image, write_text_atomic
from edgecodec.quantizer import rate_mask
from edgecodec.weights import save_codec
from edgecodec.zoo import build_model, named_configs

from . import checkpoints

STAGES = ("pixel", "latent", "denoiser", "joint")
CACHED = ("latent", "denoiser")  # stages that read the latent cache instead of pixels


@dataclass
class Recipe:
    steps: int = 40000
    fractions: tuple[float, ...] = (0.75, 0.1, 0.05, 0.1)  # the autoencoder bounds every rate: most steps go there
    lr: tuple[float, ...] = (1e-3, 5e-4, 5e-4, 2e-4)  # per stage: the small autoencoder takes 1e-3
    batch: tuple[int, ...] = (2, 8, 8, 4)  # 256² crops for the autoencoder beat 128² at equal pixels
    crop: tuple[int, ...] = (256, 256, 256, 256)  # pixels; cached stages take crop / 16 latent cells
    ema_decay: float = 0.99
    commit: float = 0.25
    continuous: float = 1.0  # latent stage: weight of the unquantized code's latent MSE
    latent_loss: float = 0.1
    bf16: bool = True  # autocast the pixel-resolution stages (used only where the CPU supports it)
    checkpoint_every: int = 250
    validate_every: int = 1000
    seed: int = 0
    stages: tuple[str, ...] = STAGES  # the stages to run; the others get no steps (with `init`)

    def stage_steps(self) -> list[int]:
        """Steps per stage: `steps` split by the fractions of the stages that run."""
        run = [s in self.stages for s in STAGES]
        share = sum(f for f, r in zip(self.fractions, run) if r)
        counts = [max(1, int(round(self.steps * f / share))) if r else 0 for f, r in zip(self.fractions, run)]
        last = max(i for i, r in enumerate(run) if r)
        counts[last] = max(1, self.steps - sum(counts[:last]))
        return counts


# --- data -----------------------------------------------------------------------------------

class CropSampler:
    """Random crops with flips from images held in memory; its RNG state is checkpointed."""

    def __init__(self, images: list[np.ndarray], seed: int):
        self.images = images
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def batch(self, n: int, size: int) -> torch.Tensor:
        out = np.empty((n, 3, size, size), np.float32)
        for i in range(n):
            img = self.images[int(self.rng.integers(len(self.images)))]
            h, w = img.shape[:2]
            if h < size or w < size:  # small images are padded by reflection
                img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")
                h, w = img.shape[:2]
            y, x = int(self.rng.integers(h - size + 1)), int(self.rng.integers(w - size + 1))
            crop = img[y:y + size, x:x + size]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            out[i] = crop.transpose(2, 0, 1) / 127.5 - 1.0
        return torch.from_numpy(out)

    def latent_batch(self, cache: list[torch.Tensor], n: int, cells: int) -> torch.Tensor:
        """Random crops of cached latents (an image and its mirror image are separate entries)."""
        out = []
        for _ in range(n):
            z = cache[int(self.rng.integers(len(cache)))]
            h, w = z.shape[1:]
            if h < cells or w < cells:
                z = F.pad(z[None], (0, max(0, cells - w), 0, max(0, cells - h)), mode="reflect")[0]
                h, w = z.shape[1:]
            y, x = int(self.rng.integers(h - cells + 1)), int(self.rng.integers(w - cells + 1))
            out.append(z[:, y:y + cells, x:x + cells])
        return torch.stack(out)


def load_folder(path: str | os.PathLike) -> list[np.ndarray]:
    return [load_image(p, notify=lambda m: None) for p in list_images(path)]


# --- EMA codebooks --------------------------------------------------------------------------

class EmaCodebooks:
    """k-means by exponential moving average (DiffO's cluster_size / embed_avg), one per VQ stage."""

    def __init__(self, codec: Codec, decay: float):
        self.books = codec.latent_vq.quantize.codebooks()
        k, d = self.books[0].shape
        self.decay = decay
        self.cluster_size = [torch.zeros(k) for _ in self.books]
        self.embed_avg = [b.detach().clone() for b in self.books]
        self.initialised = False

    def state_dict(self) -> dict:
        return {"cluster_size": self.cluster_size, "embed_avg": self.embed_avg, "initialised": self.initialised}

    def load_state_dict(self, state: dict) -> None:
        self.cluster_size, self.embed_avg = state["cluster_size"], state["embed_avg"]
        self.initialised = state["initialised"]

    def resume_from_books(self) -> None:
        """Continue from the codebooks as they are (a trained model), as init_from leaves its statistics."""
        for s, book in enumerate(self.books):
            self.embed_avg[s] = book.detach().clone()
            self.cluster_size[s].fill_(1.0)
        self.initialised = True

    @torch.no_grad()
    def init_from(self, vectors: torch.Tensor, gen: torch.Generator) -> None:
        """Seed every stage's codebook with data: base codes from samples, residual stages from
        the residuals the previous stages leave."""
        rest = vectors
        for s, book in enumerate(self.books):
            pick = torch.randint(0, rest.shape[0], (book.shape[0],), generator=gen)
            book.copy_(rest[pick])
            self.embed_avg[s].copy_(book)
            self.cluster_size[s].fill_(1.0)
            rest = rest - book[nearest(rest, book)]
        self.initialised = True

    @torch.no_grad()
    def update(self, stage: int, vectors: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> None:
        book, k = self.books[stage], self.books[stage].shape[0]
        onehot = F.one_hot(idx, k).float()
        self.cluster_size[stage].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg[stage].mul_(self.decay).add_(onehot.t() @ vectors, alpha=1 - self.decay)
        n = self.cluster_size[stage].sum()
        size = (self.cluster_size[stage] + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing
        book.copy_(self.embed_avg[stage] / size[:, None])
        dead = self.cluster_size[stage] < 0.03
        if dead.any():  # restart unused codes on random current vectors
            pick = torch.randint(0, vectors.shape[0], (int(dead.sum()),), generator=gen)
            book[dead] = vectors[pick]
            self.embed_avg[stage][dead] = vectors[pick]
            self.cluster_size[stage][dead] = 1.0


def nearest(vectors: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    dist = (vectors * vectors).sum(1, keepdim=True) - 2 * vectors @ book.t() + (book * book).sum(1)[None]
    return dist.argmin(1)


# --- the trainer ----------------------------------------------------------------------------

class Trainer:
    def __init__(self, config: str, data: str, out: str, recipe: Recipe, val: str | None = None,
                 log_to_console: bool = True, init: str | None = None):
        configs = {n: c for n, c in named_configs().items() if c.family == Codec.family}
        if config not in configs:
            raise EdgecodecError(f"unknown config '{config}': `train` trains the {Codec.family} family "
                                 f"({', '.join(configs)}); students are trained with `distill`")
        self.recipe, self.out, self.init = recipe, Path(out), init
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = _logger(self.out / "train.log", log_to_console)
        unknown = sorted(set(recipe.stages) - set(STAGES))
        if unknown or not recipe.stages:
            raise EdgecodecError(f"unknown stage(s) {', '.join(unknown) or '(none given)'}: the stages are "
                                 f"{', '.join(STAGES)}")
        if "pixel" not in recipe.stages and init is None:
            raise EdgecodecError("skipping the pixel stage needs --init: a trained model to start from")
        self.codec = build_model(configs[config]).train()
        if init is not None:
            self._load_init(init, configs[config])
        self.sampler = CropSampler(load_folder(data), recipe.seed)
        self.val_images = load_folder(val)[:8] if val else []
        self.gen = torch.Generator().manual_seed(recipe.seed)
        self.ema = EmaCodebooks(self.codec, recipe.ema_decay)
        if init is not None:  # keep the trained codebooks; their usage statistics start afresh
            self.ema.resume_from_books()
        self.step, self.stage_index = 0, 0
        self.wall = 0.0
        self.history: list[dict] = []
        self._cache: list[torch.Tensor] | None = None  # built when a cached stage first needs it
        self.optimizer = self._optimizer()

    def _load_init(self, path: str, cfg) -> None:
        from edgecodec.weights import load_file

        loaded = load_file(path)
        if loaded.codec.cfg != cfg:
            raise EdgecodecError(f"--init {path} is a '{loaded.codec.cfg.name}' model with another architecture "
                                 f"than config '{cfg.name}'")
        self.codec.load_state_dict(loaded.codec.state_dict())
        self.codec.train()

    # parameters trained in each stage
    def _params(self) -> list[torch.nn.Parameter]:
        c, stage = self.codec, STAGES[self.stage_index]
        if stage == "pixel":
            return list(c.pixel_vq.parameters())
        if stage == "latent":
            lv = c.latent_vq
            return [p for m in (lv.encoder, lv.quant_conv, lv.post_quant_conv, lv.decoder) for p in m.parameters()]
        if stage == "denoiser":
            return list(c.denoiser.parameters())
        return (list(c.denoiser.parameters()) + list(c.pixel_vq.post_quant_conv.parameters())
                + list(c.pixel_vq.decoder.parameters()))

    def _optimizer(self) -> torch.optim.Optimizer:
        for p in self.codec.parameters():
            p.requires_grad_(False)
        params = self._params()
        for p in params:
            p.requires_grad_(True)
        return torch.optim.Adam(params, lr=self.recipe.lr[self.stage_index], betas=(0.9, 0.99))

    def _lr(self, local_step: int, total: int) -> float:
        peak = self.recipe.lr[self.stage_index]
        warm = min(200, max(1, total // 10))
        if local_step < warm:
            return peak * (local_step + 1) / warm
        progress = (local_step - warm) / max(1, total - warm)
        return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    # --- one step per stage ---
    def _pixel_step(self, x: torch.Tensor) -> dict:
        with self._autocast():
            y = self.codec.pixel_vq.decode(self.codec.pixel_vq.encode(x)).float()
        mse, l1 = F.mse_loss(y, x), F.l1_loss(y, x)
        return {"loss": mse + 0.1 * l1, "mse": mse}

    def _latent_step(self, z: torch.Tensor) -> dict:
        c = self.codec
        e = c.latent_vq.encode(z)
        b, d, h, w = e.shape
        flat = e.permute(0, 2, 3, 1).reshape(-1, d)
        if not self.ema.initialised:
            self.ema.init_from(flat.detach(), self.gen)
        rest, code = flat.detach(), torch.zeros_like(flat)
        losses, commit = [], 0.0
        for s, book in enumerate(self.ema.books):
            idx = nearest(rest, book)
            self.ema.update(s, rest, idx, self.gen)
            q = book[idx].detach()
            code = code + q
            rest = rest - q
            st = flat + (code - flat).detach()  # straight-through to the encoder
            zq = st.reshape(b, h, w, d).permute(0, 3, 1, 2)
            losses.append(F.mse_loss(c.latent_vq.decode(zq), z))
            commit = commit + F.mse_loss(flat, code)
        continuous = F.mse_loss(c.latent_vq.decode(e), z)
        loss = (sum(losses) / len(losses) + self.recipe.commit * commit / len(losses)
                + self.recipe.continuous * continuous)
        return {"loss": loss, "mse_r0": losses[0], "mse_top": losses[-1], "mse_continuous": continuous}

    def _denoised(self, z: torch.Tensor) -> torch.Tensor:
        """x0 for the clean latents z, each sample at a random rate with its rate-aware noise."""
        c = self.codec
        n_rates = c.cfg.num_rates
        with torch.no_grad(), torch.autocast("cpu", enabled=False):  # the deployed encoder's float32 search
            idx = c.latent_vq.quantize.quantize(c.latent_vq.encode(z), n_rates)
            rates = torch.randint(0, n_rates, (z.shape[0],), generator=self.gen)
            code = c.latent_vq.quantize.dequantize_kept(idx, rate_mask(rates, n_rates))
            z_base = c.latent_vq.decode(code)
            table = torch.tensor([[p.sigma, p.input_scale, p.timestep] for p in c.rates])[rates]
            noise = torch.randn(z_base.shape, generator=self.gen)
        return c.denoise(z_base, code, noise, table[:, 0], table[:, 1], c.denoiser.time_embedding(table[:, 2]))

    def _denoiser_step(self, z: torch.Tensor) -> dict:
        lat = F.mse_loss(self._denoised(z), z)
        return {"loss": lat, "lat_mse": lat}

    def _joint_step(self, x: torch.Tensor) -> dict:
        with torch.no_grad():
            z = self.codec.pixel_vq.encode(x)
        with self._autocast():
            x0 = self._denoised(z)
            img = self.codec.render(x0).float()
        pix = F.mse_loss(img, (x + 1) * 0.5)
        lat = F.mse_loss(x0.float(), z)
        return {"loss": pix + self.recipe.latent_loss * lat, "pix_mse": pix, "lat_mse": lat}

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.recipe.bf16 and bf16_native())

    def _batch(self) -> torch.Tensor:
        i = self.stage_index
        if STAGES[i] not in CACHED:
            return self.sampler.batch(self.recipe.batch[i], self.recipe.crop[i])
        if self._cache is None:
            self._cache = self._latent_cache()
        return self.sampler.latent_batch(self._cache, self.recipe.batch[i],
                                         self.recipe.crop[i] // self.codec.cfg.downsample)

    @torch.no_grad()
    def _latent_cache(self) -> list[torch.Tensor]:
        """Every training image and its mirror image through the (frozen) pixel encoder, once."""
        pv, out = self.codec.pixel_vq, []
        for img in self.sampler.images:
            x = torch.from_numpy(to_model_input(img, self.codec.cfg.downsample))
            out += [pv.encode(x)[0], pv.encode(x.flip(-1))[0]]
        self.log.info(json.dumps({"latent_cache": len(out), "step": self.step}))
        return out

    # --- orchestration ---
    def run(self, stop_after: int | None = None, progress: bool = True) -> None:
        from tqdm import tqdm

        counts = self.recipe.stage_steps()
        total = sum(counts)
        done_this_run = 0
        bar = tqdm(total=total, initial=self.step, desc="train", unit="step", disable=not progress,
                   dynamic_ncols=True)
        while self.step < total:
            stage = STAGES[self.stage_index]
            start = sum(counts[: self.stage_index])
            local = self.step - start
            if local >= counts[self.stage_index]:
                self._finish_stage(stage)
                continue
            t0 = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr(local, counts[self.stage_index])
            x = self._batch()
            out = getattr(self, f"_{stage}_step")(x)
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self._params(), 1.0)
            self.optimizer.step()
            self.step += 1
            done_this_run += 1
            dt = time.perf_counter() - t0
            stats = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
            bar.set_postfix(stage=stage, loss=f"{stats['loss']:.4f}", img_s=f"{x.shape[0] / dt:.1f}")
            bar.update(1)
            if self.step % 50 == 0:
                self.log.info(json.dumps({"step": self.step, "stage": stage, **stats,
                                          "img_per_s": x.shape[0] / dt, "wall_s": round(self.wall, 1)}))
            if self.val_images and self.step % self.recipe.validate_every == 0:
                self.validate()
            if self.step % self.recipe.checkpoint_every == 0:
                self.save_checkpoint()
            self.wall += time.perf_counter() - t0  # steps, validation and checkpoints
            if stop_after is not None and done_this_run >= stop_after:
                self.save_checkpoint()
                bar.close()
                return
        while self.stage_index < len(STAGES):  # the last stage run, and any after it that do not run
            self._finish_stage(STAGES[self.stage_index])
        bar.close()
        self.finish()

    def _finish_stage(self, stage: str) -> None:
        if stage in self.recipe.stages:  # a stage that did not run keeps the --init model's state
            if stage == "pixel":
                self.normalise_latent()
            elif stage == "latent":
                self.compute_prior()
            self.log.info(json.dumps({"stage_done": stage, "step": self.step, "wall_s": round(self.wall, 1)}))
            if self.val_images:
                self.validate()
        self.stage_index += 1
        if self.stage_index < len(STAGES):
            self.optimizer = self._optimizer()
        self.save_checkpoint()

    @torch.no_grad()
    def normalise_latent(self) -> None:
        """Rescale the pixel latent to unit std; encode/decode of the autoencoder is unchanged."""
        pv = self.codec.pixel_vq
        zs = [pv.encode(self.sampler.batch(8, 128)) for _ in range(4)]
        std = float(torch.cat(zs).std())
        pv.quant_conv.weight.div_(std)
        pv.quant_conv.bias.div_(std)
        pv.post_quant_conv.weight.mul_(std)
        self.log.info(json.dumps({"latent_std_before": std}))

    @torch.no_grad()
    def compute_prior(self) -> None:
        """Entropy prior: per-stage index histograms over every training image (+1 smoothing)."""
        c = self.codec.eval()
        counts = torch.ones_like(c.latent_vq.quantize.prior)
        for img in self.sampler.images:
            x = torch.from_numpy(to_model_input(img, c.cfg.multiple))
            idx = c.encode_indices(x, c.cfg.num_rates - 1)
            for s in range(idx.shape[1]):
                counts[s] += torch.bincount(idx[:, s].reshape(-1), minlength=counts.shape[1])
        c.latent_vq.quantize.prior.copy_(counts)
        c.train()
        probs = counts.float() / counts.sum(1, keepdim=True)
        bits = -(probs * probs.log2()).sum(1)
        self.log.info(json.dumps({"prior_entropy_bits": [round(float(b), 3) for b in bits]}))

    @torch.no_grad()
    def validate(self) -> dict:
        from edgecodec.harness import Case, compare, per_rate

        c = self.codec.eval()
        cases = []
        for i, img in enumerate(self.val_images):
            x = torch.from_numpy(to_model_input(img, c.cfg.multiple))
            for rate in range(c.cfg.num_rates):
                idx = c.encode_indices(x, rate)
                noise = torch.from_numpy(np.random.Generator(np.random.PCG64(rate)).standard_normal(
                    (1, c.cfg.latent_channels) + idx.shape[2:], dtype=np.float32))
                cases.append(Case(f"val{i}", rate, img, inputs=(idx, noise, rate)))
        full = per_rate(compare(cases, lambda k: c.decode_graph(*k.inputs).numpy()), ("psnr",))
        plain = per_rate(compare(cases, lambda k: c.decode_without_denoiser(k.inputs[0]).numpy()), ("psnr",))
        rows = {f["rate"]: {"psnr": f["psnr"], "psnr_no_denoiser": p["psnr"]} for f, p in zip(full, plain)}
        ae = float(np.mean([_ae_psnr(c, img) for img in self.val_images]))
        c.train()
        stage = STAGES[min(self.stage_index, len(STAGES) - 1)]
        record = {"val_step": self.step, "stage": stage, "ae_psnr": ae, "rates": rows}
        self.history.append(record)
        self.log.info(json.dumps(record))
        return record

    # --- persistence ---
    def save_checkpoint(self) -> None:
        state = {
            "model": self.codec.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(), "step": self.step, "stage_index": self.stage_index,
            "sampler": self.sampler.rng.bit_generator.state, "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "wall": self.wall, "history": self.history,
            "recipe": asdict(self.recipe),
        }
        checkpoints.save(self.out, state)

    def load_checkpoint(self) -> None:
        state = checkpoints.load(self.out)
        if len(state["recipe"]["fractions"]) != len(STAGES):
            raise EdgecodecError(f"--resume: {self.out} holds a run of an older recipe with other stages; "
                                 f"start a new run directory")
        self.codec.load_state_dict(state["model"])
        self.step, self.stage_index = state["step"], state["stage_index"]
        self.ema = EmaCodebooks(self.codec, self.recipe.ema_decay)
        self.ema.load_state_dict(state["ema"])
        if self.stage_index < len(STAGES):
            self.optimizer = self._optimizer()
            self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.rng.bit_generator.state = state["sampler"]
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.wall, self.history = state["wall"], state["history"]
        self.log.info(json.dumps({"resumed_at": self.step, "stage": STAGES[min(self.stage_index, len(STAGES) - 1)]}))

    def finish(self) -> Path:
        meta = {"edgecodec.trained": "true", "edgecodec.steps": str(self.step),
                "edgecodec.train_wall_s": f"{self.wall:.0f}", "edgecodec.recipe": json.dumps(asdict(self.recipe))}
        if self.init is not None:
            meta["edgecodec.init"] = Path(self.init).name  # the file it started from (see the model card)
        path = self.out / "model.safetensors"
        save_codec(self.codec.eval(), path, meta)
        write_text_atomic(self.out / "history.json", json.dumps(self.history, indent=2))
        self.log.info(json.dumps({"finished": str(path), "steps": self.step, "wall_s": round(self.wall, 1)}))
        return path


def bf16_native() -> bool:
    """bfloat16 autocast pays only where the CPU computes in it (AVX-512 BF16 or AMX); elsewhere it is emulated."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _ae_psnr(codec: Codec, img: np.ndarray) -> float:
    from edgecodec.harness import capped_psnr, to_image

    h, w = img.shape[:2]
    x = torch.from_numpy(to_model_input(img, codec.cfg.multiple))
    return capped_psnr(img, to_image(codec.render(codec.pixel_vq.encode(x)).numpy(), h, w))


def _logger(path: Path, console: bool) -> logging.Logger:
    log = logging.getLogger(f"edgecodec.train.{path}")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fh = logging.FileHandler(path)
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(fh)
    log.propagate = False
    return log
