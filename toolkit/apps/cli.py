"""`edgecodec <verb>`: user mistakes end with one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgecodec.console import progress as _progress
from edgecodec.console import say as _say
from edgecodec.errors import EdgecodecError, missing_package

DEFAULT_MODEL = "tiny"
MODELS_BUILD_LIMIT = 500_000_000  # parameters: `models` builds no larger random-weight model for its fingerprint


def _read_bytes(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise EdgecodecError(f"no such file: {path}")
    return p.read_bytes()


def _decoder(args, loaded=None):
    from edgecodec.runtimes import create_decoder

    model = loaded if loaded is not None else args.model
    return create_decoder(args.runtime, model=model, bundle=getattr(args, "bundle", None))


# --- verbs ----------------------------------------------------------------------------------

def cmd_encode(args) -> int:
    """With --bundle: the bundle's encode graph on a runtime (no torch needed); else the torch model."""
    from edgecodec.coding import encode_with
    from edgecodec.imageio import load_image, write_bytes_atomic
    from edgecodec.metrics import bpp
    from edgecodec.runtimes import create_decoder

    rgb = load_image(args.image, max_pixels=args.max_pixels, notify=_say)
    runtime = create_decoder(args.runtime, model=args.model, bundle=args.bundle)  # a bundle without an encoder says so
    if args.container != "edc":  # the model's own file format, for its authors' decoder
        if runtime.spec.container != args.container:
            raise EdgecodecError(f"model {runtime.spec.model} writes no '{args.container}' files "
                                 f"(its containers: edc{', ' + runtime.spec.container if runtime.spec.container else ''})")
        data = runtime.encode_payload(rgb)
    else:
        seeds = 1 if args.seed is not None else _seeds_for(args, runtime)
        data = encode_with(runtime, rgb, args.rate, seed=args.seed, seeds=seeds)
    write_bytes_atomic(args.output, data)
    h, w = rgb.shape[:2]
    print(f"{args.output}: {w}x{h}, rate {args.rate}, {len(data)} bytes, {bpp(len(data), h, w):.4f} bpp")
    return 0


def cmd_decode(args) -> int:
    from edgecodec.imageio import save_png

    data = _read_bytes(args.input)
    decoder = _decoder(args)
    image = decoder.decode(data)
    save_png(args.output, image)
    info = decoder.info
    print(f"{args.output}: {image.shape[1]}x{image.shape[0]} decoded by {info.backend} on {info.device} "
          f"({info.precision}) in {sum(decoder.last_timings.values()):.0f} ms")
    return 0


def cmd_info(args) -> int:
    from edgecodec import bitstream
    from edgecodec.metrics import bpp

    data = _read_bytes(args.input)
    if data[: len(bitstream.MAGIC)] != bitstream.MAGIC and args.model:  # a model's own file format (OneDC's)
        from edgecodec.weights import load_model

        codec = load_model(args.model).codec
        if codec.stream_spec().container is None:
            bitstream.read_header(data)  # refuses it in one line
        described = codec.describe_payload(data)
        out = {"width": described["width"], "height": described["height"], "rate": 0, "bytes": len(data),
               "bpp": bpp(len(data), described["height"], described["width"]), **described}
    else:
        hdr = bitstream.read_header(data)
        out = {"width": hdr.width, "height": hdr.height, "rate": hdr.rate, "bytes": len(data),
               "bpp": bpp(len(data), hdr.height, hdr.width), "fingerprint": hdr.fingerprint.hex(),
               "seed": hdr.seed, "version": hdr.version, "payload_bytes": hdr.payload_bytes}
    if args.runtime:  # decode once, then say what the runtime really ran (and compiled) for this stream
        decoder = _decoder(args)
        decoder.decode(data)
        out.update(decode_ms=round(sum(decoder.last_timings.values()), 1),
                   stages_ms={k: round(v, 1) for k, v in decoder.last_timings.items()},
                   tiles=decoder.tiles(out["height"], out["width"]),
                   runtime=decoder.info.to_json())
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:14s} {v:.5f}" if isinstance(v, float) else f"{k:14s} {json.dumps(v) if isinstance(v, dict) else v}")
    return 0


def _run_eval(args, images: list[tuple[str, object]], on_stream=None) -> dict:
    """Encode with the bundle's encode graphs where the decoder runs a bundle that has them (no
    torch needed), else with the torch model; decode with the chosen runtime."""
    from .evaluate import evaluate, parse_rates
    from edgecodec.runtimes import bundle_model, create_decoder

    if args.model is None:
        args.model = bundle_model(args.bundle) if args.bundle else DEFAULT_MODEL
    decoder = _decoder(args)
    encoder = decoder if decoder.can_encode else create_decoder("torch-cpu", model=args.model)
    rates = parse_rates(args.rate, decoder.spec.num_rates)
    args.seeds = _seeds_for(args, encoder)
    with _progress(len(images) * len(rates), "eval") as bar:
        return evaluate(encoder, decoder, images, rates, on_stream=on_stream, progress=lambda: bar.update(),
                        seeds=args.seeds)


def _print_summary(result: dict) -> None:
    rt = result["runtime"]
    print(f"model {result['model']['name']} ({result['model']['source']}), runtime {rt['backend']} on {rt['device']}")
    extra = {r["rate"]: r for r in result.get("ablation", [])}
    columns = sorted({k for r in extra.values() for k in r if k.startswith("psnr_") and k != "psnr_with_denoiser"})
    base = {r["rate"]: r for r in result.get("baselines", [])}
    head = f"{'rate':>4} {'bpp':>8} {'PSNR dB':>8} {'MS-SSIM':>8}"
    head += "".join(f" {c[5:].replace('_', '-') + ' dB':>18}" for c in columns)
    head += f" {'JPEG bpp':>9} {'WebP bpp':>9}" if base else ""
    print(head)
    for row in result["per_rate"]:
        ms = "-" if row["ms_ssim"] is None else f"{row['ms_ssim']:.4f}"
        line = f"{row['rate']:>4} {row['bpp']:>8.4f} {row['psnr']:>8.2f} {ms:>8}"
        line += "".join(f" {extra[row['rate']][c]:>18.2f}" for c in columns)
        if base:
            b = base[row["rate"]]
            line += f" {b['jpeg_bpp']:>9.4f} {b['webp_bpp']:>9.4f}"
        print(line)


def cmd_eval(args) -> int:
    from edgecodec.imageio import list_images, load_image, write_text_atomic

    images = [(p.name, load_image(p, max_pixels=args.max_pixels, notify=_say)) for p in list_images(args.dir)]
    result = _run_eval(args, images)
    if args.ablation:
        from .evaluate import ablation
        from edgecodec.weights import load_model

        result["ablation"] = ablation(load_model(args.model), images, [r["rate"] for r in result["per_rate"]],
                                      args.seeds)
    if args.baselines:
        from edgecodec.benchmarks.baselines import compare

        result["baselines"] = compare(dict(images), result["images"])
    if args.html:
        from edgecodec.benchmarks.baselines import rd_points

        from .report_html import eval_to_html

        result["rd_baselines"] = {fmt: rd_points(dict(images), fmt) for fmt in ("jpeg", "webp")}
    write_text_atomic(args.json, json.dumps(result, indent=2))
    if args.markdown:
        from .evaluate import markdown_table

        write_text_atomic(args.markdown, markdown_table(result))
    if args.html:
        write_text_atomic(args.html, eval_to_html(json.loads(json.dumps(result)), result["rd_baselines"]))
    _print_summary(result)
    return 0


def cmd_demo(args) -> int:
    """Encode, decode and evaluate the photos that installed packages ship (no data needed)."""
    from edgecodec.imageio import sample_images, save_png, write_bytes_atomic, write_text_atomic

    out = Path(args.output)
    for sub in ("images", "streams", "decoded"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    images = sorted(sample_images().items())

    def keep(name: str, rate: int, data: bytes, image) -> None:
        write_bytes_atomic(out / "streams" / f"{name}_r{rate}.edc", data)
        save_png(out / "decoded" / f"{name}_r{rate}.png", image)

    for name, rgb in images:
        save_png(out / "images" / f"{name}.png", rgb)
    result = _run_eval(args, images, on_stream=keep)
    write_text_atomic(out / "eval.json", json.dumps(result, indent=2))
    _print_summary(result)
    print(f"streams, decoded images and eval.json are in {out}/")
    return 0


def cmd_train(args) -> int:
    from .train import STAGES, Recipe, Trainer

    recipe = Recipe(seed=args.seed)
    if args.stages is not None:
        recipe.stages = tuple(x.strip() for x in args.stages.split(",") if x.strip())
    if args.steps is not None:
        recipe.steps = args.steps
    if args.batch is not None:
        recipe.batch = (args.batch,) * len(STAGES)
    if args.crop is not None:
        recipe.crop = (args.crop,) * len(STAGES)
    if args.checkpoint_every < 1:
        raise EdgecodecError("--checkpoint-every must be at least 1")
    recipe.checkpoint_every = args.checkpoint_every
    trainer = Trainer(args.config, args.data, args.out, recipe, val=args.val, init=args.init)
    if args.resume:
        trainer.load_checkpoint()
    trainer.run(stop_after=args.stop_after)
    if trainer.stage_index >= len(STAGES):
        print(f"model written to {Path(args.out) / 'model.safetensors'} after {trainer.step} steps "
              f"({trainer.wall / 60:.1f} min of training)")
    else:
        print(f"stopped at step {trainer.step}; continue with --resume")
    return 0


def cmd_distill(args) -> int:
    from edgecodec.weights import load_model

    from .distill import DistillRecipe, Distiller, distributed_from_env, student_config

    recipe = DistillRecipe(seed=args.seed)
    if args.checkpoint_every < 1:
        raise EdgecodecError("--checkpoint-every must be at least 1")
    for key in ("steps", "batch", "crop", "lr", "checkpoint_every"):
        if getattr(args, key) is not None:
            setattr(recipe, key, getattr(args, key))
    teacher = load_model(args.teacher)
    cfg = student_config(teacher, args.student)
    if not Path(args.data).is_dir():
        raise EdgecodecError(f"--data {args.data}: not a directory of images")
    with distributed_from_env():  # under torchrun: one process of a data-parallel run
        distiller = Distiller(teacher, cfg, args.data, args.out, recipe, val=args.val,
                              progress=lambda n, desc: _progress(n, desc))
        if args.resume:
            distiller.load_checkpoint()
        distiller.run(stop_after=args.stop_after)
    if distiller.rank:
        return 0
    if distiller.step >= recipe.steps:
        print(f"student written to {Path(args.out) / 'student.safetensors'} after {distiller.step} steps "
              f"({distiller.wall / 60:.1f} min); report in {Path(args.out) / 'report.json'}")
    else:
        print(f"stopped at step {distiller.step}; continue with --resume")
    return 0


def cmd_import(args) -> int:
    return {"diffo": _import_diffo, "onedc": _import_onedc}[args.family](args)


def _import_onedc(args) -> int:
    from edgecodec.weights import save_codec

    from .onedc_import import import_onedc

    name = Path(args.output).stem
    loaded, report = import_onedc(args.unet, args.codec, args.vae, args.unet_config, name, lora_alpha=args.lora_alpha,
                                  vae_attn_patch=args.vae_attn_patch, scheduler_config=args.scheduler_config,
                                  z_only=args.z_only)
    save_codec(loaded.codec, args.output, {"edgecodec.imported_from": "OneDC", "edgecodec.trained": "true",
                                           "edgecodec.import": json.dumps(report)})
    w = report["codec_widths"]
    print(f"imported {report['loaded_tensors']} tensors (LoRA merged with alpha {report['lora_alpha']:g}); "
          f"y {w['bottleneck_ch']} channels, x_hat {w['ctrl_ch']}, tokens {w['unet_ch_config'][-1]}; "
          f"VAE attention patch {report['vae_attn_patch']}; "
          f"{report['decode_parameters'] / 1e6:.2f} M decode-side parameters" + ("; z-only" if report["z_only"] else ""))
    print(f"model written to {args.output} (fingerprint {loaded.codec.stream_spec().fingerprint.hex()})")
    return 0


def _import_diffo(args) -> int:
    from edgecodec.weights import save_codec

    from .diffo_import import import_diffo

    name = Path(args.output).stem
    loaded, report = import_diffo(args.config, args.unet, args.latent_vq, args.pixel_vq, name,
                                  prior_images=args.prior_images, say=_say)
    save_codec(loaded.codec, args.output, {"edgecodec.imported_from": "DiffO", "edgecodec.trained": "true",
                                           "edgecodec.import": json.dumps(report)})
    point = report["operating_point"]
    print(f"imported {report['loaded_tensors']} tensors; ignored: "
          + (", ".join(f"{n} {why}" for why, n in report["ignored"].items()) or "nothing"))
    print(f"one rate: sigma {point['sigma']:.7g}, t {point['timestep']}, input / {point['input_std']:.7g}; "
          f"windows {report['window_sizes']} (middle {report['middle_window']}); images padded to multiples of "
          f"{report['image_multiple']}; prior {report['prior']}")
    print(f"model written to {args.output} (fingerprint {loaded.codec.stream_spec().fingerprint.hex()})")
    return 0


def cmd_trace(args) -> int:
    import numpy as np

    from edgecodec import bitstream
    from edgecodec.imageio import write_bytes_atomic
    from edgecodec.weights import load_model

    codec = load_model(args.model).codec.eval()
    spec = codec.stream_spec()
    if (args.stream is None) == (args.indices is None):
        raise EdgecodecError("trace wants exactly one of --stream FILE.edc and --indices FILE.npy")
    if spec.coder != "vq":  # the family reads its own payload, every stage under its names
        if args.stream is None:
            raise EdgecodecError(f"model {spec.model} decodes streams, not indices: use --stream FILE")
        _, payload = bitstream.payload_of(_read_bytes(args.stream), spec)
        out = codec.trace_payload(payload)
    else:
        out = _trace_vq(args, codec, spec)
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **out)
    write_bytes_atomic(args.output, buffer.getvalue())
    print(f"{args.output}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items()))
    return 0


def _trace_vq(args, codec, spec) -> dict:
    import numpy as np
    import torch

    from edgecodec import bitstream
    from edgecodec.frames import to_image
    from edgecodec.noise import portable_noise

    if args.stream is not None:
        parsed = bitstream.parse(_read_bytes(args.stream), spec)
        indices, rate, seed = parsed.indices, parsed.rate, parsed.header.seed
        height, width = parsed.header.height, parsed.header.width
    else:
        indices = _load_npy(args.indices, np.int64)
        if indices.ndim == 3:
            indices = indices[:, None]
        if indices.ndim != 4 or indices.shape[0] != 1:
            raise EdgecodecError(f"--indices {args.indices}: shape {indices.shape}, want (1,h,w) or (1,S,h,w)")
        rate = indices.shape[1] - 1 if args.rate is None else args.rate
        if not 0 <= rate < spec.num_rates or indices.shape[1] < rate + 1:
            raise EdgecodecError(f"rate {rate} does not fit {indices.shape[1]} index stage(s) of model "
                                 f"{spec.model} (rates 0..{spec.num_rates - 1})")
        if indices.min() < 0 or indices.max() >= spec.codebook_size:
            raise EdgecodecError(f"--indices {args.indices}: values outside 0..{spec.codebook_size - 1}")
        indices, seed = indices[:, : rate + 1], 0
        height, width = indices.shape[2] * spec.downsample, indices.shape[3] * spec.downsample
    shape = (1, spec.latent_channels) + indices.shape[2:]
    noise = portable_noise(seed, shape) if args.noise is None else _load_npy(args.noise, np.float32)
    if noise.shape != shape:
        raise EdgecodecError(f"--noise {args.noise}: shape {noise.shape}, want {shape}")
    with torch.no_grad():
        stages = codec.trace(torch.from_numpy(indices), torch.from_numpy(noise), rate)
    out = {"indices": indices, "noise": noise, **{k: v.numpy() for k, v in stages.items() if k != "image"}}
    out["image"] = to_image(stages["image"].numpy(), height, width)
    return out


def _load_npy(path: str, dtype):
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EdgecodecError(f"{path}: not a readable .npy file ({exc.__class__.__name__})") from None
    if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
        raise EdgecodecError(f"{path}: dtype {arr.dtype}, want {np.dtype(dtype).name}")
    return np.ascontiguousarray(arr, dtype=dtype)


def cmd_export(args) -> int:
    from edgecodec.export.exporter import export_bundle, parse_sizes

    from edgecodec.weights import load_model

    loaded = load_model(args.model)
    sizes = parse_sizes(args.size, loaded.codec.cfg.multiple)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bundle = export_bundle(loaded, args.output, formats, args.precision, sizes,
                           parity_images=args.parity_images, say=_say)
    for rt, worst in bundle.manifest["parity"]["worst"].items():
        print(f"parity {rt}: max |diff| {worst['max_abs']:.2e}, min PSNR {worst['min_psnr']:.1f} dB")
    print(f"bundle written to {bundle.root} ({len(bundle.manifest['files'])} files)")
    return 0


def cmd_pipeline(args) -> int:
    from .pipeline import Recipe, run_pipeline

    report = run_pipeline(Recipe.load(args.recipe), args.output)
    failed = [c["check"] for c in report["checks"] if not c["passed"]]
    print(Path(args.output, "report.md").read_text(encoding="utf-8"))
    print(f"report written to {Path(args.output) / 'report.json'} and report.md ({report['wall_s']:.0f} s)")
    if failed:
        _say(f"error: {len(failed)} check(s) failed, first: {failed[0]}")
        return 1
    return 0


def cmd_models(args) -> int:
    from edgecodec.export.exporter import parse_sizes
    from edgecodec.flops import stage_flops
    from edgecodec.weights import load_model, packaged_weights
    from edgecodec.zoo import build_model, named_configs

    rows = []
    for name, cfg in named_configs().items():
        (h, w), = parse_sizes(args.size, 1)
        hp, wp = (-(-h // cfg.multiple) * cfg.multiple, -(-w // cfg.multiple) * cfg.multiple)
        try:
            shape = build_model(cfg, device="meta")  # counts without weights
        except ImportError as exc:  # a family behind an extra that is not installed
            _say(f"{name}: {missing_package(exc, 'models') or exc}")
            continue
        ships = packaged_weights(name) is not None
        # the fingerprint needs the weights: seeded random ones of a model this large take tens of seconds
        # and gigabytes to build (OneDC: 21 s, 5.7 GB), which `decode --model` pays on use, `models` not
        big = not ships and sum(p.numel() for p in shape.parameters()) > MODELS_BUILD_LIMIT
        rows.append({"name": name, "family": cfg.family, "trained_weights_ship": ships,
                     "decode_parameters": shape.decode_side_parameters(), "size": [hp, wp],
                     "gflops": {k: v / 1e9 for k, v in stage_flops(cfg, hp, wp).items()}, "rates": cfg.num_rates,
                     "fingerprint": None if big else load_model(name, quiet=True).codec.stream_spec().fingerprint.hex()})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':12s} {'family':8s} {'weights':8s} {'params':>9s} {'total GF':>10s} {'rates':>5s}  "
          f"{'fingerprint':16s}  GFLOPs per stage")
    for r in rows:
        gf = r["gflops"]
        stages = ", ".join(f"{k} {v:.2f}" for k, v in gf.items() if k != "total")
        print(f"{r['name']:12s} {r['family']:8s} {'shipped' if r['trained_weights_ship'] else 'random':8s} "
              f"{r['decode_parameters'] / 1e6:>8.2f}M {gf['total']:>10.2f} {r['rates']:>5d}  "
              f"{r['fingerprint'] or '(built on use)':16s}  {stages}")
    print(f"GFLOPs per decode at {rows[0]['size'][0]}x{rows[0]['size'][1]} (padded to each model's multiple); a large "
          "random-weight model's fingerprint is computed when it is built")
    return 0


def cmd_report(args) -> int:
    from edgecodec.imageio import write_text_atomic

    from .report_html import to_html

    path = Path(args.run_dir) / "report.json"
    try:
        report = json.loads(_read_bytes(str(path)))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgecodecError(f"{path} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(report, dict) or report.get("schema") != "edgecodec-pipeline/1":
        raise EdgecodecError(f"{path} is not an edgecodec pipeline report")
    out = args.output or str(Path(args.run_dir) / "report.html")
    try:
        write_text_atomic(out, to_html(report))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgecodecError(f"{path} lacks what the page needs ({exc.__class__.__name__}: {exc})") from None
    print(f"report written to {out}")
    return 0


def cmd_devices(args) -> int:
    from edgecodec.runtimes import BACKENDS, probe

    rows = []
    for name, b in BACKENDS.items():
        ok, why = probe(name)
        rows.append({"runtime": name, "device": b.device, "precisions": list(b.precisions),
                     "needs_bundle": b.needs_bundle, "usable": ok, "reason": why})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            state = "usable" if r["usable"] else f"not usable: {r['reason']}"
            print(f"{r['runtime']:18s} {r['device']:6s} {','.join(r['precisions']):10s} {state}")
    return 0


# --- parser ---------------------------------------------------------------------------------

def _max_pixels(p: argparse.ArgumentParser) -> None:
    from edgecodec.imageio import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger input images (default {DEFAULT_MAX_PIXELS})")


def _seeds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="seed search: decode with K candidate noise seeds and store the one closest to the "
                        "image; same bytes, K-1 more decodes per encode (default: the model's, 1 = off, unless "
                        "its card measured a gain)")


def _seeds_for(args, runtime) -> int:
    """--seeds, else the model's default (weights.SEEDS_KEY, carried into bundles)."""
    return args.seeds if args.seeds is not None else int(runtime.model.get("seeds") or 1)


def _decoding(p: argparse.ArgumentParser, runtime_help: str = "decoder backend", default: str | None = "auto") -> None:
    p.add_argument("--runtime", default=default, help=f"{runtime_help} (see `edgecodec devices`; default {default})")
    p.add_argument("--bundle", default=None, help="exported bundle directory (for ONNX Runtime / OpenVINO)")
    p.add_argument("--model", default=None,
                   help="model name or .safetensors path (default: the bundle's model, else tiny)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgecodec", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("encode", help="image -> .edc stream")
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--rate", type=int, default=0, help="rate index, 0 = lowest bpp (default 0)")
    p.add_argument("--seed", type=int, default=None, help="noise seed to store (default: the best of --seeds)")
    p.add_argument("--container", default="edc", metavar="NAME",
                   help="edc (default: header with the model's fingerprint and a CRC), or the model's own file "
                        "format for its authors' decoder (onedc)")
    _seeds(p)
    _decoding(p, "runtime of the encoder (and of the seed search's decodes)")
    _max_pixels(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help=".edc stream -> PNG")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    _decoding(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="describe a .edc stream (and, with --runtime, how a runtime decodes it)")
    p.add_argument("input")
    p.add_argument("--json", action="store_true")
    _decoding(p, "also decode it once and report what this runtime ran and compiled: device, precision, "
                 "providers, tiles", default=None)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="rate-distortion of a folder of images")
    p.add_argument("dir")
    p.add_argument("--rate", default="all", help="rate index, comma list or 'all' (default all)")
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--ablation", action="store_true", help="also decode without the denoiser (torch)")
    p.add_argument("--baselines", action="store_true", help="also find the bpp JPEG and WebP need for our PSNR")
    p.add_argument("--markdown", default=None, metavar="OUT.md",
                   help="also write the per-rate table (with ablation and baselines when asked) in Markdown")
    p.add_argument("--html", default=None, metavar="OUT.html",
                   help="also write a page with the rate-distortion charts (JPEG and WebP on the same images)")
    _decoding(p)
    _max_pixels(p)
    _seeds(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="encode, decode and evaluate the sample photos installed packages ship")
    p.add_argument("-o", "--output", default="edgecodec-demo")
    p.add_argument("--rate", default="all")
    _decoding(p)
    _seeds(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="import a published codec's checkpoints as an edgecodec model file")
    which = p.add_subparsers(dest="family", required=True, metavar="FAMILY")
    q = which.add_parser("diffo", help="DiffO: config.yaml + ema_model.pth + vq_model.pth.tar + GT_vq_model.pth.tar",
                         description="Read DiffO's config file and its trainer's three checkpoints strictly into an "
                                     "edgecodec model file (encoder and decoder); sizes, windows and the one-step "
                                     "operating point come from the config.")
    q.add_argument("--config", required=True, help="DiffO's config.yaml")
    q.add_argument("--unet", required=True, help="ema_model_*.pth (the UNet's state_dict)")
    q.add_argument("--latent-vq", required=True, help="vq_model_*.pth.tar (the latent VQ autoencoder)")
    q.add_argument("--pixel-vq", required=True, help="GT_vq_model_*.pth.tar (the GT VQGAN)")
    q.add_argument("--prior-images", default=None,
                   help="folder of images whose index histogram becomes the entropy prior (default uniform)")
    q.add_argument("-o", "--output", required=True, help="the model file to write (.safetensors)")
    q.set_defaults(func=cmd_import)
    q = which.add_parser("onedc", help="OneDC: model.safetensors (UNet) + model_1.safetensors (codec) + the SD VAE",
                         description="Read OneDC's two checkpoint files strictly into one edgecodec model file "
                                     "(encoder and decoder, LoRA merged). Every width the files' shapes say is read "
                                     "from them; the rest comes from these flags, defaulting to OneDC's released "
                                     "values.")
    q.add_argument("--unet", required=True, help="model.safetensors: the UNet with PEFT LoRA, conv_in, vae_reduction")
    q.add_argument("--codec", required=True, help="model_1.safetensors: the codec (encoder, priors, synthesis)")
    q.add_argument("--vae", required=True, help="diffusers AutoencoderKL folder (SD-2.1's VAE for OneDC): "
                                                "config.json + diffusion_pytorch_model.safetensors")
    q.add_argument("--unet-config", required=True, help="the UNet's diffusers config.json (SD-1.5's for OneDC)")
    q.add_argument("--lora-alpha", type=float, default=8.0, help="LoRA alpha; the rank comes from the shapes "
                                                                  "(default 8, OneDC's)")
    q.add_argument("--vae-attn-patch", type=int, default=16,
                   help="latent window of the VAE's mid-block attention (default 16, OneDC's)")
    q.add_argument("--scheduler-config", default=None,
                   help="DDIM scheduler config.json (default: SD-1.5's scaled_linear 0.00085..0.012, 1000 steps)")
    q.add_argument("--z-only", action="store_true",
                   help="OneDC's z-only model (0.0034 bpp): no y-stream, y is the prior's means")
    q.add_argument("-o", "--output", required=True, help="the model file to write (.safetensors)")
    q.set_defaults(func=cmd_import)

    p = sub.add_parser("trace", help="run the torch decoder stage by stage and save every intermediate (.npz)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or .safetensors path (default tiny)")
    p.add_argument("--stream", default=None, help=".edc stream to trace")
    p.add_argument("--indices", default=None, help="(1,h,w) or (1,S,h,w) int64 .npy instead of a stream")
    p.add_argument("--noise", default=None, help="(1,C,h,w) float32 .npy replacing the portable noise")
    p.add_argument("--rate", type=int, default=None, help="with --indices: the rate (default: every stage given)")
    p.add_argument("-o", "--output", required=True, help="the .npz to write")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("export", help="export the decoder to ONNX / OpenVINO IR in a verified bundle")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or .safetensors path (default tiny)")
    p.add_argument("--format", default="onnx,openvino", help="onnx, openvino or both (default both)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--size", required=True, help="HxW[,HxW...] padded image sizes, e.g. 512x768,768x512")
    p.add_argument("--parity-images", type=int, default=2, help="sample photos used for the parity check")
    p.add_argument("-o", "--output", required=True, help="bundle directory")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train a codec config on a folder of images (stages: pixel, latent, denoiser, joint)")
    p.add_argument("--config", default="tiny", help="config name (tiny, diffo)")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", default=None, help="folder of validation images (first 8 used)")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, train.log, model.safetensors")
    p.add_argument("--resume", action="store_true", help="continue exactly from RUN_DIR/checkpoint.pt")
    p.add_argument("--steps", type=int, default=None,
                   help="total steps over the stages run, split by the recipe's fractions (default 40000)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from this trained model file of the same config instead of random weights")
    p.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated stages to run (default: pixel,latent,denoiser,joint); the others "
                        "keep --init's weights, e.g. --init RUN/model.safetensors --stages latent,denoiser,joint")
    p.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after N steps this run")
    p.add_argument("--checkpoint-every", type=int, default=250, metavar="N",
                   help="write the checkpoint every N steps (atomically; a killed run resumes from it; default 250)")
    p.add_argument("--batch", type=int, default=None, help="batch size for every stage")
    p.add_argument("--crop", type=int, default=None, help="crop size for every stage (multiple of 64 for tiny)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="distil a teacher's decoder into an edge student that reads the same streams",
                       description="Encode the images of --data with the teacher at every rate, decode them with "
                                   "the teacher (its image and denoised latent, with each stream's portable noise), "
                                   "and train the student's decoder on crops of those decodes. The student keeps "
                                   "the teacher's encoder, codebooks and prior: the two share every stream.")
    p.add_argument("--teacher", default="tiny", help="teacher model name or .safetensors path (default tiny)")
    p.add_argument("--student", default="tiny-edge",
                   help="student shape: a preset (tiny-edge, diffo-edge) or a TOML file with head_channels, "
                        "head_blocks, widths, shuffle (default tiny-edge)")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", default=None, help="folder of validation images (first 8 used)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 12000)")
    p.add_argument("--batch", type=int, default=None, help="crops per step (default 8)")
    p.add_argument("--crop", type=int, default=None, help="crop size in pixels, a multiple of 16 (default 256)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    p.add_argument("--resume", action="store_true", help="continue exactly from RUN_DIR/checkpoint.pt")
    p.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after N steps this run")
    p.add_argument("--checkpoint-every", type=int, default=250, metavar="N",
                   help="write the checkpoint every N steps (atomically; a killed run resumes from it; default 250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, distill.log, student.safetensors, "
                                                "report.json")
    p.epilog = ("Data-parallel on several processes or GPUs: torchrun --nproc_per_node N -m edgecodec.apps.cli "
                "distill ... (the global --batch is split over the processes)")
    p.set_defaults(func=cmd_distill)

    from edgecodec.benchmarks.cli import add_bench_parser

    add_bench_parser(sub)

    from edgecodec.quantize.cli import add_quantize_parser

    add_quantize_parser(sub)

    p = sub.add_parser("pipeline", help="the main job: export, quantize, verify and bench, with a report",
                       description="Export the FP32 decoder, quantize it to INT8 with each method, verify quality "
                                   "and runtime agreement on real photos at every rate, bench every usable runtime "
                                   "and precision, and write report.json and report.md in the run directory. "
                                   "Defaults: the embedded model and the sample photos installed packages ship.")
    p.add_argument("--recipe", default=None, help="TOML file changing model, sizes, images, methods, runtimes "
                                                  "(keys: see edgecodec.apps.pipeline.Recipe)")
    p.add_argument("-o", "--output", required=True, help="run directory")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("models", help="every named model: family, shipped weights, parameters, GFLOPs per stage")
    p.add_argument("--size", default="512x768", help="HxW image size for the GFLOPs (default 512x768)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("report", help="render a pipeline run's report.html again from its JSON (no re-running)")
    p.add_argument("run_dir", help="a pipeline run directory (with report.json)")
    p.add_argument("-o", "--output", default=None, metavar="FILE.html", help="default: RUN_DIR/report.html")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("devices", help="which decoder backends are usable here, and why not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        try:
            return args.func(args)
        except ImportError as exc:  # an optional package this verb needs is absent
            missing = missing_package(exc, args.verb)
            if missing is None:
                raise
            raise missing from None
    except EdgecodecError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except (OSError, MemoryError) as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
