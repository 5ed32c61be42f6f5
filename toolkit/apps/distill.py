"""`edgecodec distill`: train an edge student (edgecodec.families.edge) on the teacher's own decodes.

The signal is what deployment will see: every image of DIR is encoded by the teacher at its top rate,
and for every rate the teacher decodes that rate's stream (its indices, and the portable noise of the
stream's seed, exactly as `encode` writes it) to an image and to its denoised latent x0. The student
then learns, on random crops aligned to the code grid:

    loss = mse(student image, teacher image)
         + ORIGINAL * mse(student image, original image)      # where the teacher itself is off
         + FEATURE * mse(x0_probe(student features), teacher x0)   # reaches the head directly

Only the student's decode side trains; its encoder, codebooks and prior are the teacher's, copied in
and frozen, so the fingerprint (and every stream) is shared. Resume is exact: the checkpoint holds the
student, the optimizer, the sampler's and torch's RNG states and the step; the teacher's decodes are
recomputed (deterministically) on resume.

Scale-out: the same run under torchrun trains data-parallel with torch.distributed DDP (NCCL on GPUs,
gloo on CPUs):

    torchrun --nproc_per_node N -m edgecodec.apps.cli distill --teacher tiny --data DIR --out RUN_DIR ...

Every process draws the same global batch from the same sampler state and trains on its slice, DDP
averages the gradients, so a step equals the single-process step on the global batch; rank 0 alone
logs, validates and writes checkpoints and the student; `--resume` works the same under torchrun.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgecodec.coding import candidate_seeds
from edgecodec.errors import EdgecodecError
from edgecodec.frames import to_model_input
from edgecodec.imageio import list_images, load_image, write_text_atomic
from edgecodec.noise import portable_noise
from edgecodec.quantizer import rate_mask
from edgecodec.weights import LoadedModel, save_codec
from edgecodec.zoo import build_model

from . import checkpoints


@dataclass
class DistillRecipe:
    steps: int = 12000
    batch: int = 8
    crop: int = 256  # pixels, a multiple of the code's downsampling; 128 leaves the 1/16 head mostly padding
    lr: float = 1e-3
    original_weight: float = 1.0
    feature_weight: float = 0.05
    checkpoint_every: int = 250
    validate_every: int = 1000
    seed: int = 0


def student_config(teacher: LoadedModel, student: str):
    """A preset name (edge.PRESETS) or a TOML file of the same keys, applied to `teacher`."""
    import tomllib

    from edgecodec.families.edge import PRESETS, student_of

    if student in PRESETS:
        shape, name = dict(PRESETS[student]), student
    elif Path(student).is_file():
        try:
            shape = tomllib.loads(Path(student).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EdgecodecError(f"--student {student}: not valid TOML ({exc})") from None
        name = shape.pop("name", Path(student).stem)
        if "widths" in shape:
            shape["widths"] = tuple(shape["widths"])
    else:
        raise EdgecodecError(f"--student {student}: not a preset ({', '.join(PRESETS)}) and not a TOML file")
    if teacher.codec.family != "diffo":
        raise EdgecodecError(f"--teacher {teacher.name} is a {teacher.codec.family} model: distil from a "
                             f"diffo-family teacher")
    try:
        cfg = student_of(teacher.name, teacher.codec.cfg, name, **shape)
        cfg.check()
    except (TypeError, ValueError) as exc:
        raise EdgecodecError(f"--student {student}: {exc}") from None
    return cfg


def student_from(teacher: LoadedModel, cfg):
    """A fresh student whose encode side is the teacher's (same fingerprint)."""
    student = build_model(cfg)
    student.adopt(teacher.codec)
    if student.stream_spec().fingerprint != teacher.codec.stream_spec().fingerprint:
        raise EdgecodecError("internal: the student's fingerprint differs from the teacher's")
    return student.eval()


# --- the teacher's decodes ------------------------------------------------------------------------

@dataclass
class Target:
    """One image: its original (padded), the top-rate indices, and per rate the teacher's image,
    denoised latent x0 and the stream's noise."""

    original: np.ndarray  # Hp x Wp x 3 uint8
    indices: np.ndarray  # (S, h, w) int64, every stage
    teacher: list[np.ndarray]  # per rate: Hp x Wp x 3 uint8
    x0: list[np.ndarray]  # per rate: (C, h, w) float16
    noise: list[np.ndarray]  # per rate: (C, h, w) float32


@torch.no_grad()
def teacher_targets(teacher, rgb: np.ndarray) -> Target:
    spec = teacher.stream_spec()
    x = torch.from_numpy(to_model_input(rgb, spec.multiple))
    hp, wp = x.shape[2:]
    padded = np.ascontiguousarray(((x[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8))
    top = teacher.encode_indices(x, spec.num_rates - 1)
    consts = teacher.rate_constants()
    images, x0s, noises = [], [], []
    for rate in range(spec.num_rates):
        idx = top[:, : rate + 1]
        seed = candidate_seeds(idx.numpy(), 1)[0]  # the seed a plain encode stores
        noise = torch.from_numpy(portable_noise(seed, (1, spec.latent_channels) + tuple(idx.shape[2:])))
        code = teacher.quantizer.dequantize(idx)
        values = {k: v[rate:rate + 1] for k, v in consts.items()}
        z_base = teacher.latent_vq.decode(code)
        x0 = teacher.denoise(z_base, code, noise, **values)
        out = teacher.render(x0)
        images.append(np.rint(out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        x0s.append(x0[0].numpy().astype(np.float16))
        noises.append(noise[0].numpy())
    assert images[0].shape[:2] == (hp, wp)
    return Target(padded, top[0].numpy(), images, x0s, noises)


class CropSampler:
    """Random crops aligned to the code grid, a random rate per crop; its RNG is checkpointed. No flips:
    a flipped crop of indices is not the code of the flipped image, so the pair would teach the student
    a mapping the teacher never makes."""

    def __init__(self, targets: list[Target], crop: int, downsample: int, seed: int):
        self.targets, self.crop, self.ds = targets, crop, downsample
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def batch(self, n: int, num_rates: int):
        cells = self.crop // self.ds
        out = {k: [] for k in ("indices", "rate", "noise", "teacher", "original", "x0")}
        for _ in range(n):
            t = self.targets[int(self.rng.integers(len(self.targets)))]
            rate = int(self.rng.integers(num_rates))
            h, w = t.indices.shape[1:]
            cy, cx = int(self.rng.integers(h - cells + 1)), int(self.rng.integers(w - cells + 1))
            y, x, c = cy * self.ds, cx * self.ds, self.crop
            idx = t.indices[:, cy:cy + cells, cx:cx + cells].copy()
            idx[rate + 1:] = 0
            out["indices"].append(idx)
            out["rate"].append(rate)
            out["noise"].append(t.noise[rate][:, cy:cy + cells, cx:cx + cells])
            out["x0"].append(t.x0[rate][:, cy:cy + cells, cx:cx + cells].astype(np.float32))
            for key, img in (("teacher", t.teacher[rate]), ("original", t.original)):
                out[key].append(img[y:y + c, x:x + c].transpose(2, 0, 1).astype(np.float32) / 255.0)
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack(v))) if k != "rate" else torch.tensor(v)
                for k, v in out.items()}


# --- the run --------------------------------------------------------------------------------------

def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StudentStep(nn.Module):
    """The student's decode side as one forward(), the unit DistributedDataParallel wraps:
    (indices, noise, rate) -> (image, x0 probe)."""

    def __init__(self, student):
        super().__init__()
        self.student = student

    def forward(self, indices, noise, rate):
        s = self.student
        # the indices carry every stage (zeros past the rate), as the decode graph gets them
        code = s.quantizer.dequantize_kept(indices, rate_mask(rate, indices.shape[1]))
        feats = s.features(code, noise, s.rate_bias[rate])
        return s.render(feats), s.x0_probe(feats)


class Distiller:
    def __init__(self, teacher: LoadedModel, student_cfg, data: str, out: str, recipe: DistillRecipe,
                 val: str | None = None, progress=None):
        if recipe.crop <= 0 or recipe.crop % teacher.codec.cfg.downsample:
            raise EdgecodecError(f"--crop must be a multiple of {teacher.codec.cfg.downsample}")
        if recipe.steps < 1 or recipe.batch < 1:
            raise EdgecodecError("--steps and --batch must be at least 1")
        self.rank, self.world = world()
        if recipe.batch % self.world:
            raise EdgecodecError(f"--batch {recipe.batch} does not split over {self.world} processes")
        self.teacher, self.recipe, self.out = teacher, recipe, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "distill.log"
        self.student = student_from(teacher, student_cfg).train()
        paths = list_images(data)
        if not paths:
            raise EdgecodecError(f"no images in {data}")
        images = [load_image(p, notify=lambda m: None) for p in paths]
        small = [i for i in images if min(i.shape[:2]) < recipe.crop]
        if small:
            raise EdgecodecError(f"{len(small)} image(s) of {data} are smaller than --crop {recipe.crop}")
        self.val_images = [(p.name, load_image(p, notify=lambda m: None)) for p in list_images(val)[:8]] if val else []
        teacher.codec.eval()
        bar = progress(len(images), "teacher decodes") if progress else None
        targets = []
        for img in images:
            targets.append(teacher_targets(teacher.codec, img))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        self.sampler = CropSampler(targets, recipe.crop, teacher.codec.cfg.downsample, recipe.seed)
        for k, p in self.student.named_parameters():
            p.requires_grad_(not k.startswith(self.student.ENCODE_SIDE))
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        self.device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() and
                                   self.world > 1 else "cpu")
        self.student.to(self.device)
        self.step_module = StudentStep(self.student)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.step_module = DistributedDataParallel(self.step_module)
        self.optimizer = torch.optim.Adam(self.params, lr=recipe.lr)
        torch.manual_seed(recipe.seed)
        self.step, self.wall, self.history = 0, 0.0, []

    def lr(self) -> float:
        warm = min(200, max(1, self.recipe.steps // 10))
        if self.step < warm:
            return self.recipe.lr * (self.step + 1) / warm
        progress = (self.step - warm) / max(1, self.recipe.steps - warm)
        return self.recipe.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    def train_step(self) -> dict:
        r = self.recipe
        full = self.sampler.batch(r.batch, self.student.cfg.num_rates)  # the same global batch on every rank
        n = r.batch // self.world
        b = {k: v[self.rank * n:(self.rank + 1) * n].to(self.device) for k, v in full.items()}
        image, probe = self.step_module(b["indices"], b["noise"], b["rate"])
        distill = F.mse_loss(image, b["teacher"])
        original = F.mse_loss(image, b["original"])
        feature = F.mse_loss(probe, b["x0"])
        loss = distill + r.original_weight * original + r.feature_weight * feature
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.step += 1
        stats = torch.stack([loss.detach(), distill.detach(), original.detach(), feature.detach()])
        if self.world > 1:  # the global batch's mean, as one process would log it
            import torch.distributed as dist

            dist.all_reduce(stats)
            stats /= self.world
        return dict(zip(("loss", "distill", "original", "feature"), stats.tolist()))

    def run(self, stop_after: int | None = None, progress: bool = True) -> None:
        from tqdm import tqdm

        r = self.recipe
        lead = self.rank == 0  # rank 0 alone logs, validates and writes
        bar = tqdm(total=r.steps, initial=self.step, desc="distill", unit="step", disable=not (progress and lead),
                   dynamic_ncols=True)
        done = 0
        while self.step < r.steps:
            t0 = time.perf_counter()
            stats = self.train_step()
            dt = time.perf_counter() - t0
            bar.set_postfix(loss=f"{stats['loss']:.5f}", img_s=f"{r.batch / dt:.0f}")
            bar.update(1)
            if lead and self.step % 50 == 0:
                self._log({"step": self.step, **stats, "lr": self.lr(), "img_per_s": r.batch / dt})
            if lead and self.val_images and self.step % r.validate_every == 0:
                self.validate()
            if lead and self.step % r.checkpoint_every == 0:
                self.save_checkpoint()
            self.wall += time.perf_counter() - t0
            done += 1
            if stop_after is not None and done >= stop_after and self.step < r.steps:
                if lead:
                    self.save_checkpoint()
                bar.close()
                return
        bar.close()
        if lead:
            self.finish()

    @torch.no_grad()
    def validate(self) -> dict:
        """Per rate on the validation images, full size: student and teacher against the original and
        the student against the teacher, decoding the same streams."""
        from edgecodec.harness import compare, per_rate

        from .evaluate import stream_cases

        s, t = self.student.cpu().eval(), self.teacher.codec.eval()
        rates = list(range(s.cfg.num_rates))
        cases = stream_cases(self.teacher, self.val_images, rates)
        teacher = {id(c): _torch_decoder(t)(c) for c in cases}  # decoded once, used twice below
        rows = compare(cases, _torch_decoder(s), reference=lambda c: teacher[id(c)], with_ms_ssim=True)
        teacher_rows = compare(cases, lambda c: teacher[id(c)], with_ms_ssim=True)
        self.student.to(self.device).train()
        summary = []
        for mine, theirs in zip(per_rate(rows, ("bpp", "psnr", "ms_ssim", "psnr_vs_reference")),
                                per_rate(teacher_rows, ("psnr", "ms_ssim"))):
            summary.append({"rate": mine["rate"], "bpp": mine["bpp"], "student_psnr": mine["psnr"],
                            "teacher_psnr": theirs["psnr"], "student_ms_ssim": mine["ms_ssim"],
                            "teacher_ms_ssim": theirs["ms_ssim"], "student_vs_teacher_psnr": mine["psnr_vs_reference"]})
        record = {"val_step": self.step, "images": len(self.val_images), "per_rate": summary}
        self.history.append(record)
        self._log(record)
        return record

    # --- persistence ---
    def save_checkpoint(self) -> None:
        state = {"student": self.student.decoder_state(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "sampler": self.sampler.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "wall": self.wall, "history": self.history,
                 "recipe": asdict(self.recipe), "config": self.student.cfg.to_json()}
        checkpoints.save(self.out, state)

    def load_checkpoint(self) -> None:
        state = checkpoints.load(self.out)
        if state["config"] != self.student.cfg.to_json():
            raise EdgecodecError(f"--resume: {self.out} is a run of another teacher or student shape")
        self.student.load_state_dict(state["student"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.wall, self.history = state["step"], state["wall"], state["history"]
        self.sampler.rng.bit_generator.state = state["sampler"]
        torch.set_rng_state(state["torch_rng"])
        self._log({"resumed_at": self.step})

    def finish(self) -> Path:
        from edgecodec.flops import stage_flops

        path = self.out / "student.safetensors"
        meta = {"edgecodec.trained": "true", "edgecodec.distilled_from": self.teacher.source,
                "edgecodec.steps": str(self.step), "edgecodec.train_wall_s": f"{self.wall:.0f}",
                "edgecodec.recipe": json.dumps(asdict(self.recipe))}
        save_codec(self.student.cpu().eval(), path, meta)
        if self.val_images and (not self.history or self.history[-1]["val_step"] != self.step):
            self.validate()
        size = (512, 768)
        flops = {role: {k: v / 1e9 for k, v in stage_flops(m.cfg, *size).items()}
                 for role, m in (("teacher", self.teacher.codec), ("student", self.student))}
        report = {
            "teacher": {"name": self.teacher.name, "source": self.teacher.source,
                        "decode_parameters": self.teacher.codec.decode_side_parameters()},
            "student": {"name": self.student.cfg.name, "file": str(path),
                        "decode_parameters": self.student.decode_side_parameters()},
            "fingerprint": self.student.stream_spec().fingerprint.hex(),
            "gflops_at": list(size), "gflops": flops, "recipe": asdict(self.recipe), "steps": self.step,
            "wall_s": round(self.wall, 1), "validation": self.history[-1] if self.history else None,
            "history": self.history,
        }
        write_text_atomic(self.out / "report.json", json.dumps(report, indent=2) + "\n")
        self._log({"finished": str(path), "steps": self.step, "wall_s": round(self.wall, 1)})
        return path

    def _log(self, record: dict) -> None:
        if self.rank:  # one log per run, however many processes
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M:%S"), **record}) + "\n")


def _torch_decoder(model):
    from edgecodec import bitstream

    spec = model.stream_spec()

    def decode(case):
        parsed = bitstream.parse(case.data, spec)
        noise = portable_noise(parsed.header.seed, (1, spec.latent_channels) + parsed.indices.shape[2:])
        return model.decode_graph(torch.from_numpy(parsed.indices), torch.from_numpy(noise), parsed.rate).numpy()

    return decode


class distributed_from_env:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1): NCCL with one GPU
    per process where CUDA is available, gloo on CPUs; leave it on exit. A no-op for one process."""

    def __enter__(self):
        import torch.distributed as dist

        self.mine = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
        if self.mine:
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return self

    def __exit__(self, *exc):
        import torch.distributed as dist

        if self.mine and dist.is_initialized():
            dist.destroy_process_group()
