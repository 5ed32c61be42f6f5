"""ONNX -> OpenVINO IR (FP32, or FP16-compressed weights)."""

from __future__ import annotations

from pathlib import Path


def export_openvino(onnx_path: Path, xml_path: Path, precision: str = "fp32") -> None:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    # save_model compresses weights to FP16 unless told not to (toolchain.md)
    ov.save_model(model, str(xml_path), compress_to_fp16=(precision == "fp16"))


def stamp(xml_path: Path, fingerprint: str) -> None:
    """Write the model's stream fingerprint into the IR's rt_info (runtimes check it on load);
    saved beside and renamed over, as the read model maps the weights file."""
    import os

    import openvino as ov

    from edgecodec.runtimes.openvino_backend import FINGERPRINT_KEY

    model = ov.Core().read_model(str(xml_path))
    model.set_rt_info(fingerprint, FINGERPRINT_KEY)
    tmp = xml_path.with_name(".stamp-" + xml_path.name)
    ov.save_model(model, str(tmp), compress_to_fp16=False)  # constants are kept as they are stored
    del model
    os.replace(tmp.with_suffix(".bin"), xml_path.with_suffix(".bin"))
    os.replace(tmp, xml_path)


def produce(onnx_path: Path, writer, stem: str, precision: str) -> dict[str, str]:
    """The `openvino` row of runtimes.FORMATS: the IR pair, converted from the exported ONNX graph."""
    xml = writer.path(stem + ".xml")
    export_openvino(onnx_path, xml, precision)
    return {"openvino": xml.name, "openvino_weights": xml.with_suffix(".bin").name}
