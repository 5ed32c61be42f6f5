"""Quantization-aware training with distillation (NNCF 3.x torch backend).

1. `quantize_decoder`: `nncf.quantize` the torch DecodeGraph (the exported unit; a custom module,
   not a root nn.Sequential, which NNCF's hook storage cannot wrap) with the same scheme as PTQ,
   calibrated on the same real items. NNCF returns the module with quantizers hooked in; their
   scales are parameters.
2. `train`: fine-tune that student against the untouched FP32 decoder as teacher. Our own loss
   (NNCF 3 removed its knowledge-distillation algorithm):

       loss = MSE(student image, teacher image) + ORIGINAL_WEIGHT * MSE(student image, original image)

   The first term makes the INT8 decoder imitate the FP32 one (what every runtime is compared
   against); the small second term keeps it anchored to the real picture where the teacher itself
   is off. It is small (0.01) because the teacher can be far from the picture: on `tiny` with random
   weights (teacher PSNR 8.8 dB) a weight of 0.1 made that term 15x the distillation term and pulled
   the student away from the teacher (PSNR vs FP32 29.7 -> 29.0 dB in 5 steps). Adam with a cosine
   decay from 1e-6: measured on 8 items, 60 steps, 1e-6 took PSNR vs FP32 on held-out streams from
   29.75 to 30.18 dB, while 3e-6 and 1e-5 fitted the training items better and held-out ones worse.
   Codebooks are frozen: they define what a stream means (and the model fingerprint).
3. `save_checkpoint` / `load_checkpoint`: state_dict + `nncf.torch.get_config`, restored onto a fresh
   DecodeGraph with `nncf.torch.load_from_config` (the documented NNCF 3 round trip).
4. `export_onnx`: every quantizer switched to ONNX QuantizeLinear/DequantizeLinear export before a
   TorchScript (dynamo=False) export, so the graph has standard Q/DQ instead of OpenVINO
   FakeQuantize custom ops (toolchain.md); constant weight quantizers are then folded to INT8
   initializers with their own scale/zero-point (qdq.fold_weight_quantizers; without that OpenVINO
   ran a third of the convolutions in f32). The OpenVINO IR is converted from that ONNX graph.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgecodec.errors import ModelError

from .calibration import CalibItem, cases
from .scheme import Scheme, build_scheme, classify_torch, scheme_section

CHECKPOINT_FORMAT = "edgecodec-qat-1"
ORIGINAL_WEIGHT = 0.01  # weight of the term against the original image (see train)


def decode_graph(codec):
    from edgecodec.zoo import DecodeGraph

    return DecodeGraph(codec).eval()


def _batch(items: list[CalibItem]) -> tuple[torch.Tensor, ...]:
    """Items of one size stacked into a batch; DecodeGraph takes one rate per sample."""
    idx = torch.from_numpy(np.concatenate([i.indices for i in items]))
    noise = torch.from_numpy(np.concatenate([i.noise for i in items]))
    rate = torch.tensor([i.rate for i in items], dtype=torch.int64)
    return idx, noise, rate


def _target(items: list[CalibItem]) -> torch.Tensor:
    arr = np.stack([i.original.transpose(2, 0, 1) for i in items]).astype(np.float32) / 255.0
    return torch.from_numpy(arr)


def torch_scheme(model, example: tuple, overflow: str = "auto", float_layers: dict | None = None) -> Scheme:
    return build_scheme(classify_torch(model, example, float_layers), "torch", "torch", overflow, float_layers)


def quantize_decoder(codec, items: list[CalibItem], overflow: str = "auto"):
    """FP32 codec -> (NNCF-quantized DecodeGraph on a copy of the codec, Scheme)."""
    import nncf

    graph = decode_graph(copy.deepcopy(codec).cpu().eval())
    scheme = torch_scheme(graph, items[0].tensors(), overflow, codec.float_layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student = nncf.quantize(graph, nncf.Dataset(items, lambda item: item.tensors()), subset_size=len(items),
                                advanced_parameters=scheme.advanced_parameters(), **scheme.nncf_kwargs())
    return student, scheme


def trainable_parameters(student) -> list[torch.nn.Parameter]:
    """Decoder weights and quantizer scales; codebooks (and the unused encoders) stay frozen."""
    from nncf.torch.function_hook.wrapper import get_hook_storage

    for p in student.parameters():
        p.requires_grad_(False)
    params = []
    codec = student.codec
    for module in codec.decode_side_modules():
        if module is codec.quantizer:
            continue
        params.extend(module.parameters())
    params.extend(get_hook_storage(student).parameters())
    unique = list({id(p): p for p in params if p.is_floating_point()}.values())
    for p in unique:
        p.requires_grad_(True)
    return unique


@torch.no_grad()
def psnr_vs_teacher(student, teacher, items: list[CalibItem]) -> float:
    from edgecodec.harness import compare

    rows = compare(cases(items), lambda c: student(*c.inputs.tensors()).numpy(),
                   reference=lambda c: teacher(*c.inputs.tensors()).numpy())
    return float(np.mean([r["psnr_vs_reference"] for r in rows]))


def train(student, teacher, items: list[CalibItem], steps: int, lr: float = 1e-6, batch: int = 4,
          seed: int = 0, progress=None) -> dict:
    """Distillation fine-tuning of `student` in place; returns the loss history summary."""
    params = trainable_parameters(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=lr)
    # cosine decay to zero: the usual fine-tuning schedule; the last steps make small moves, so the
    # model does not end on a step that just flipped many weights across a rounding boundary
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / max(1, steps))))
    gen = np.random.default_rng(seed)
    by_size: dict[tuple, list[CalibItem]] = {}
    for item in items:
        by_size.setdefault(item.indices.shape, []).append(item)
    groups = list(by_size.values())
    losses = []
    t0 = time.perf_counter()
    student.train()
    for step in range(steps):
        group = groups[step % len(groups)]
        pick = [group[i] for i in gen.choice(len(group), size=min(batch, len(group)), replace=False)]
        inputs = _batch(pick)
        with torch.no_grad():
            target = teacher(*inputs)
        out = student(*inputs)
        distill = torch.nn.functional.mse_loss(out, target)
        anchor = torch.nn.functional.mse_loss(out, _target(pick))
        loss = distill + ORIGINAL_WEIGHT * anchor
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append((float(loss.detach()), float(distill.detach()), float(anchor.detach())))
        if progress is not None:
            progress()
    student.eval()
    first, last = losses[0] if losses else (None,) * 3, losses[-1] if losses else (None,) * 3
    return {"steps": steps, "lr": lr, "schedule": "Adam, cosine decay to 0", "batch": min(batch, max(len(g) for g in groups)),
            "loss": f"mse(student, teacher) + {ORIGINAL_WEIGHT} * mse(student, original)",
            "loss_first": first[0], "loss_last": last[0], "distill_first": first[1], "distill_last": last[1],
            "trainable_parameters": int(sum(p.numel() for p in params)),
            "seconds": round(time.perf_counter() - t0, 2)}


def save_checkpoint(student, codec, path: Path, extra: dict | None = None) -> None:
    """state_dict + nncf.torch.get_config (as JSON), with the model it belongs to."""
    import nncf.torch

    spec = codec.stream_spec()
    torch.save({"format": CHECKPOINT_FORMAT,
                "nncf_config": json.dumps(nncf.torch.get_config(student)),
                "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
                "model": {"name": codec.cfg.name, "config": codec.cfg.to_json(),
                          "fingerprint": spec.fingerprint.hex()},
                "extra": json.dumps(extra or {})}, str(path))


def load_checkpoint(path: Path, codec):
    """Fresh DecodeGraph of `codec`'s architecture -> load_from_config -> load_state_dict (strict)."""
    import nncf.torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle, zip and torch errors of many kinds)
        raise ModelError(f"{path} is not a readable QAT checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not an edgecodec QAT checkpoint")
    if ckpt["model"]["fingerprint"] != codec.stream_spec().fingerprint.hex():
        raise ModelError(f"{path} was trained from another model ({ckpt['model']['name']}, "
                         f"fingerprint {ckpt['model']['fingerprint']})")
    graph = decode_graph(copy.deepcopy(codec).cpu().eval())
    restored = nncf.torch.load_from_config(graph, json.loads(ckpt["nncf_config"]))
    restored.load_state_dict(ckpt["state_dict"], strict=True)
    return restored.eval()


def export_onnx(student, codec, height: int, width: int, path: Path) -> None:
    """Quantized torch DecodeGraph -> ONNX with standard Q/DQ pairs and INT8 weight initializers."""
    import onnx
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    from edgecodec.export.onnx_export import trace_onnx

    from .qdq import fold_weight_quantizers, signed_activations

    for module in student.modules():
        if isinstance(module, BaseQuantizer):
            module.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    model = trace_onnx(student.eval(), codec, height, width, path)
    fold_weight_quantizers(model)
    signed_activations(model)  # ReLU-fed quantizers train unsigned; TensorRT wants INT8 (as PTQ's graph)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def run_method(loaded, writer, tmp: Path, sizes, sets, options, say):
    """The `qat` row of methods.METHODS: quantize the torch decoder, fine-tune it against the FP32 one,
    checkpoint and restore it, export every format of the bundle."""
    import shutil

    import onnx

    from edgecodec.console import progress
    from edgecodec.errors import BundleError

    from .ptq import ort_cpu_kernels, runtime_precisions, to_openvino
    from .qdq import check_standard_qdq

    codec = loaded.codec.cpu().eval()
    first = sets[sizes[0]]
    say(f"quantizing the torch decoder with NNCF ({len(first.calibration)} calibration items)")
    student, scheme = quantize_decoder(codec, first.calibration, options.overflow)
    own = options.own()
    teacher = decode_graph(codec)
    validation = [i for s in sizes for i in sets[s].validation]
    train_items = [i for s in sizes for i in sets[s].calibration]
    before = psnr_vs_teacher(student, teacher, validation)
    say(f"QAT: {own['qat_steps']} distillation steps (teacher: the FP32 decoder)")
    with progress(own["qat_steps"], "qat", unit="step") as bar:  # progress bar on stderr
        log = train(student, teacher, train_items, own["qat_steps"], own["qat_lr"], own["qat_batch"],
                    progress=lambda: bar.update())
    log["psnr_vs_fp32_before_db"] = before
    log["psnr_vs_fp32_after_db"] = psnr_vs_teacher(student, teacher, validation)
    ckpt = writer.path("qat_checkpoint.pt")
    save_checkpoint(student, codec, ckpt, extra={"sizes": [list(s) for s in sizes]})
    restored = load_checkpoint(ckpt, codec)
    log["checkpoint"] = {"file": ckpt.name, "contents": "state_dict + nncf.torch.get_config",
                         "restore": "nncf.torch.load_from_config on a fresh DecodeGraph, then load_state_dict",
                         **restore_check(student, restored, validation)}
    if not log["checkpoint"]["identical"]:
        raise BundleError(f"QAT checkpoint does not restore to the trained model "
                          f"(max |diff| {log['checkpoint']['max_abs_diff']:.2e})")
    graphs, per_graph = [], []
    for h, w in sizes:
        stem = f"decoder_{h}x{w}"
        src = tmp / f"{stem}.onnx"
        say(f"exporting the restored QAT decoder at {h}x{w} (ONNX Q/DQ export mode)")
        export_onnx(restored, codec, h, w, src)
        qdq = check_standard_qdq(onnx.load(str(src)), need_tensorrt=True)
        files, record = {}, {"size": [h, w]}
        if "onnx" in options.formats:
            path = writer.path(stem + ".onnx")
            shutil.copyfile(src, path)
            files["onnx"] = path.name
            record["onnx"] = {"qdq": qdq, "onnxruntime_cpu": ort_cpu_kernels(path, tmp / "ort-optimized.onnx"),
                              "bytes": path.stat().st_size}
        if "openvino" in options.formats:
            xml = writer.path(stem + ".xml")
            ir = to_openvino(src, xml)
            ir["cpu_runtime_precisions"] = runtime_precisions(xml)
            files.update(openvino=xml.name, openvino_weights=xml.with_suffix(".bin").name)
            record["openvino"] = {"qdq": qdq, "ir": ir,
                                  "bytes": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size}
        graphs.append({"size": [h, w], "files": files})
        per_graph.append(record)
    section = scheme_section({t: scheme for t in options.formats})  # one model feeds both
    section["graphs"] = per_graph
    section["qat"] = {"nncf": "nncf.quantize (torch backend) of DecodeGraph, then fine-tuned; quantizer "
                              "scales are trained parameters", "teacher": "the FP32 decoder", **log}
    return graphs, section


def restore_check(trained, restored, items: list[CalibItem]) -> dict:
    """The restored checkpoint must give the trained model's outputs exactly."""
    diffs = []
    with torch.no_grad():
        for item in items[:2]:
            diffs.append(float((trained(*item.tensors()) - restored(*item.tensors())).abs().max()))
    return {"items": len(diffs), "max_abs_diff": max(diffs), "identical": max(diffs) == 0.0}


def quality(student, items: list[CalibItem]) -> float:
    from edgecodec.harness import compare

    with torch.no_grad():
        return float(np.mean([r["psnr"] for r in compare(cases(items), lambda c: student(*c.inputs.tensors()).numpy())]))


__all__ = [
    "CHECKPOINT_FORMAT",
    "export_onnx",
    "load_checkpoint",
    "psnr_vs_teacher",
    "quantize_decoder",
    "restore_check",
    "run_method",
    "save_checkpoint",
    "torch_scheme",
    "train",
    "trainable_parameters",
]
