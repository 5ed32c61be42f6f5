"""FLOPs of the decode graph (2 x MAC), counted by torch's FlopCounterMode on the meta device:
no weights, no compute, so even DiffO's 1.7 TFLOP graph counts in well under a second.

Per stage: each family names the submodules that compute a stage (CodecModel.stages); forward hooks
on them attribute the counter's growth to that stage. FlopCounterMode's own per-module table keys
modules by class name, not by path, so it cannot tell the latent decoder from the pixel decoder."""

from __future__ import annotations


def stage_flops(cfg, height: int, width: int) -> dict[str, int]:
    """{stage: FLOPs, ..., "total": FLOPs} for one decode at a padded height x width."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgecodec.zoo import build_model

    model = build_model(cfg, device="meta")
    counter = FlopCounterMode(display=False)
    counts = {stage: 0 for stage in model.stages}
    hooks, entry = [], {}
    for stage, names in model.stages.items():
        for name in names:
            module = model.get_submodule(name)

            def pre(mod, args, key=(stage, name)):
                entry[key] = counter.get_total_flops()

            def post(mod, args, out, key=(stage, name)):
                counts[key[0]] += counter.get_total_flops() - entry.pop(key)

            hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with counter:
            model.count_decode(height, width)
    finally:
        for hook in hooks:
            hook.remove()
    counts["total"] = int(counter.get_total_flops())
    return {k: int(v) for k, v in counts.items()}


def decode_flops(cfg, height: int, width: int) -> int:
    return stage_flops(cfg, height, width)["total"]
