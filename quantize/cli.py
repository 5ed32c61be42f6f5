"""`edgecodec quantize`: INT8 decoder bundles with NNCF (PTQ, accuracy-controlled PTQ, QAT).

Wire it into the main parser with `add_quantize_parser(sub)`; the handler returns the exit code.
User mistakes raise EdgecodecError subclasses, which the main CLI prints as one line.
"""

from __future__ import annotations

import argparse

from edgecodec.console import say


def cmd_quantize(args: argparse.Namespace) -> int:
    from edgecodec.errors import EdgecodecError
    from edgecodec.export.exporter import parse_sizes
    from edgecodec.weights import load_model

    from .bundle import QuantizeOptions, quantize_bundle

    from .methods import all_options

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    options = QuantizeOptions(method=args.method, formats=formats, samples=args.samples,
                              overflow=args.overflow_fix, parity_images=args.parity_images,
                              allow_parity_failure=args.allow_parity_failure,
                              method_options={name: getattr(args, name) for name in all_options()})
    options.check()  # before the (slow) model load and encoding
    from pathlib import Path

    if not Path(args.calib).is_dir():
        raise EdgecodecError(f"--calib {args.calib}: not a directory of images")
    loaded = load_model(args.model)
    sizes = parse_sizes(args.size, loaded.codec.cfg.multiple)
    bundle = quantize_bundle(loaded, args.output, sizes, options, calib_dir=args.calib, say=say)
    q = bundle.manifest["quantization"]
    print(f"method {q['method']}, presets {', '.join(f'{k} {v}' for k, v in q['preset'].items())}, "
          f"overflow fix {q['overflow_fix']['value']}, {q['quantized_ops']} layers in INT8")
    for rt, v in q["quality"]["validation"].items():
        print(f"quality {rt}: PSNR vs originals FP32 {v['psnr_fp32_db']:.2f} dB, INT8 {v['psnr_int8_db']:.2f} dB "
              f"(drop {v['drop_db']:+.2f} dB); INT8 vs FP32 output {v['psnr_int8_vs_fp32_db']:.1f} dB")
    for rt, worst in bundle.manifest["parity"]["worst"].items():
        print(f"parity {rt}: max |diff| {worst['max_abs']:.2e}, min PSNR {worst['min_psnr']:.1f} dB")
    print(f"bundle written to {bundle.root} ({len(bundle.manifest['files'])} files)")
    return 0


def add_quantize_parser(sub) -> argparse.ArgumentParser:
    """Register `quantize` on an argparse subparsers object; returns the new parser. The methods and
    their flags come from methods.METHODS."""
    from .methods import METHODS, all_options

    p = sub.add_parser(
        "quantize", help="INT8-quantize the decoder with NNCF into a verified bundle (ONNX Q/DQ, OpenVINO IR)",
        description="Quantize the decode graph to INT8 with NNCF, calibrated on real images from --calib "
                    "encoded and parsed exactly as at decode time (every rate covered), and write a bundle "
                    "like `edgecodec export` does, with precision int8 and a quantization record.")
    p.add_argument("--model", default="tiny", help="model name or .safetensors path (default tiny)")
    p.add_argument("--calib", required=True, help="folder of calibration images (validation: the images after them)")
    p.add_argument("--samples", type=int, default=16,
                   help="calibration items per size; images cycle through the rates (default 16)")
    p.add_argument("--size", required=True, help="HxW[,HxW...] padded image sizes, e.g. 512x768")
    p.add_argument("--method", default="ptq", choices=list(METHODS),
                   help="; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + " (default ptq)")
    for option in all_options().values():
        p.add_argument(option.flag, dest=option.name, type=option.type, default=option.default, help=option.help)
    p.add_argument("--format", default="onnx,openvino", help="onnx, openvino or both (default both)")
    p.add_argument("--overflow-fix", default="auto", choices=["auto", "enable", "disable", "first_layer"],
                   help="7-bit weights against u8*s8 saturation on x86 CPUs without VNNI "
                        "(default auto: from this machine's CPU flags)")
    p.add_argument("--parity-images", type=int, default=2, help="sample photos used for the parity check")
    p.add_argument("--allow-parity-failure", action="store_true",
                   help="write the bundle even when the INT8 graphs miss the int8 parity tolerance against "
                        "torch (recorded as parity.passed = false)")
    p.add_argument("-o", "--output", required=True, help="bundle directory")
    p.set_defaults(func=cmd_quantize)
    return p


__all__ = ["add_quantize_parser", "cmd_quantize"]
