"""The edge student family and `edgecodec distill`: shared streams, budgets, exact resume, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgecodec.apps.cli import main
from edgecodec.errors import StreamError


@pytest.fixture(scope="module")
def tiny():
    from edgecodec.weights import load_model

    return load_model("tiny")


@pytest.fixture(scope="module")
def student(tiny):
    from edgecodec.apps.distill import student_config, student_from

    return student_from(tiny, student_config(tiny, "tiny-edge"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from edgecodec.imageio import sample_images, save_png

    root = tmp_path_factory.mktemp("photos")
    for name, rgb in sample_images().items():
        for i, (y, x) in enumerate(((0, 0), (100, 200))):  # two 192x256 crops per photo
            save_png(root / f"{name}_{i}.png", np.ascontiguousarray(rgb[y:y + 192, x:x + 256]))
    return root


def test_student_budgets():
    from edgecodec.flops import stage_flops
    from edgecodec.zoo import named_configs

    cfgs = named_configs()
    edge = stage_flops(cfgs["tiny-edge"], 512, 768)
    assert edge["pixel"] <= 2.0e9 and edge["total"] <= 4.5e9, edge
    assert stage_flops(cfgs["tiny"], 512, 768)["pixel"] >= 10 * edge["pixel"]
    assert stage_flops(cfgs["diffo"], 512, 768)["pixel"] >= 10 * stage_flops(cfgs["diffo-edge"], 512, 768)["pixel"]


def test_student_config_round_trips_and_older_students_load_without_context():
    from edgecodec.families.edge import EdgeConfig
    from edgecodec.zoo import build_model, named_configs

    cfg = named_configs()["tiny-edge"]
    assert cfg.context == "pool" and EdgeConfig.from_json(cfg.to_json()) == cfg
    older = json.loads(cfg.to_json())
    del older["context"]  # what 0.5 and earlier wrote
    plain = EdgeConfig.from_json(json.dumps(older))
    assert plain.context == ""
    assert not any(k.endswith("context.weight") for k in build_model(plain).state_dict())
    assert any(k.endswith("context.weight") for k in build_model(cfg).state_dict())
    with pytest.raises(ValueError, match="context 'attention'"):
        EdgeConfig.from_json(json.dumps({**older, "context": "attention"})).check()


def test_student_and_teacher_share_streams(tiny, student, photos):
    from edgecodec.coding import encode_image
    from edgecodec.imageio import list_images, load_image
    from edgecodec.runtimes import create_decoder
    from edgecodec.weights import LoadedModel

    assert student.stream_spec().fingerprint == tiny.codec.stream_spec().fingerprint
    rgb = load_image(list_images(photos)[0])
    for rate in (0, 3):
        data = encode_image(tiny.codec, rgb, rate)
        assert encode_image(student, rgb, rate) == data  # the same encoder writes the same bytes
        out = create_decoder("torch-cpu", model=LoadedModel(student, "test", False)).decode(data)
        assert out.shape == rgb.shape and out.dtype == np.uint8


def test_training_step_decodes_as_the_deployed_graph(tiny, student, photos):
    """The student learns on the inputs the exported graph gets: every stage's indices, zeros past the
    rate. A zero index is a code vector, so those stages must be masked, not looked up (the 0.3 student
    trained on the looked-up ones; its rates 0-2 lost up to 0.12 dB on Kodak to that mismatch)."""
    from edgecodec.apps.distill import CropSampler, StudentStep, teacher_targets
    from edgecodec.imageio import list_images, load_image
    from edgecodec.zoo import DecodeGraph

    targets = [teacher_targets(tiny.codec, load_image(list_images(photos)[0]))]
    sampler = CropSampler(targets, 128, student.cfg.downsample, seed=0)
    graph = DecodeGraph(student).eval()
    seen = set()
    with torch.no_grad():
        for _ in range(12):
            b = sampler.batch(1, student.cfg.num_rates)
            image, _ = StudentStep(student)(b["indices"], b["noise"], b["rate"])
            deployed = graph(b["indices"], b["noise"], b["rate"])
            assert torch.allclose(image, deployed, atol=1e-6), int(b["rate"])
            seen.add(int(b["rate"]))
    assert 0 in seen  # rate 0 pads the most stages


def test_stream_of_another_model_is_refused(student, photos):
    from dataclasses import replace

    from edgecodec.coding import encode_image
    from edgecodec.families.diffo.config import TINY
    from edgecodec.imageio import list_images, load_image
    from edgecodec.runtimes import create_decoder
    from edgecodec.weights import LoadedModel
    from edgecodec.zoo import build_model

    other = build_model(replace(TINY, init_seed=5))
    data = encode_image(other, load_image(list_images(photos)[0]), 0)
    with pytest.raises(StreamError, match="another model"):
        create_decoder("torch-cpu", model=LoadedModel(student, "test", False)).decode(data)


def _run(args):
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(2)


def test_distill_resumes_exactly_and_writes_the_student(tmp_path, photos):
    common = ["distill", "--teacher", "tiny", "--student", "tiny-edge", "--data", str(photos), "--steps", "6",
              "--batch", "2", "--crop", "64"]
    assert _run(common + ["--out", str(tmp_path / "a")]) == 0
    assert _run(common + ["--out", str(tmp_path / "b"), "--stop-after", "3"]) == 0
    assert not (tmp_path / "b" / "student.safetensors").exists()
    assert _run(common + ["--out", str(tmp_path / "b"), "--resume"]) == 0
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a" / "student.safetensors"), load_file(tmp_path / "b" / "student.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["gflops"]["student"]["pixel"] * 10 <= report["gflops"]["teacher"]["pixel"]
    # the written student is an ordinary model file: it loads and decodes the teacher's streams
    from edgecodec.weights import load_model

    loaded = load_model(str(tmp_path / "a" / "student.safetensors"))
    assert loaded.codec.family == "edge" and loaded.codec.cfg.teacher_name == "tiny"


def test_distill_refuses_bad_input(tmp_path, photos, capsys):
    rc = _run(["distill", "--student", "nope", "--data", str(photos), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a preset" in err[0]
    rc = _run(["distill", "--data", str(photos), "--crop", "100", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "multiple of 16" in err[-1]


def test_student_exports_with_parity(tmp_path, student):
    from edgecodec.export.exporter import export_bundle
    from edgecodec.weights import LoadedModel

    bundle = export_bundle(LoadedModel(student, "test", False), str(tmp_path / "b"), ["onnx", "openvino"], "fp32",
                           [(128, 192)], parity_images=1)
    assert bundle.manifest["parity"]["passed"]
    assert bundle.manifest["model"]["family"] == "edge"
    assert set(bundle.manifest["graphs"][0]["stage_gflops"]) == {"latent", "pixel"}


def test_shipped_student(tmp_path, tiny, photos):
    """tiny-edge ships trained, within 5 MB, and decodes what `encode --model tiny` writes (CLI)."""
    from edgecodec.imageio import list_images, load_image
    from edgecodec.weights import load_model, packaged_weights

    path = packaged_weights("tiny-edge")
    assert path is not None and path.stat().st_size <= 5 * 2**20
    student = load_model("tiny-edge")
    assert student.trained and student.codec.stream_spec().fingerprint == tiny.codec.stream_spec().fingerprint
    image = list_images(photos)[0]
    assert main(["encode", str(image), "-o", str(tmp_path / "s.edc"), "--model", "tiny", "--rate", "2"]) == 0
    assert main(["decode", str(tmp_path / "s.edc"), "-o", str(tmp_path / "s.png"), "--model", "tiny-edge",
                 "--runtime", "torch-cpu"]) == 0
    assert load_image(tmp_path / "s.png").shape == load_image(image).shape


def _ddp_first_step(rank: int, world: int, init: str, photos: str, out: str) -> None:
    import torch.distributed as dist

    from edgecodec.apps.distill import DistillRecipe, Distiller, student_config
    from edgecodec.weights import load_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        teacher = load_model("tiny")
        d = Distiller(teacher, student_config(teacher, "tiny-edge"), photos, f"{out}/rank{rank}",
                      DistillRecipe(steps=1, batch=4, crop=64))
        stats = d.train_step()
        grads = {k: p.grad.clone() for k, p in d.student.named_parameters() if p.grad is not None}
        torch.save({"stats": stats, "grads": grads}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_data_parallel_step_equals_single_process(tmp_path, photos):
    """Two gloo processes on halves of the global batch: the first step's loss and gradients equal the
    single-process step on that whole batch."""
    import torch.multiprocessing as mp

    from edgecodec.apps.distill import DistillRecipe, Distiller, student_config
    from edgecodec.weights import load_model

    mp.spawn(_ddp_first_step, args=(2, f"file://{tmp_path}/init", str(photos), str(tmp_path)), nprocs=2)
    teacher = load_model("tiny")
    d = Distiller(teacher, student_config(teacher, "tiny-edge"), str(photos), str(tmp_path / "single"),
                  DistillRecipe(steps=1, batch=4, crop=64))
    stats = d.train_step()
    grads = {k: p.grad for k, p in d.student.named_parameters() if p.grad is not None}
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["stats"]["loss"] == pytest.approx(stats["loss"], rel=1e-5)
        assert got["grads"].keys() == grads.keys() and len(grads) > 10
        for k, g in grads.items():
            torch.testing.assert_close(got["grads"][k], g, rtol=1e-4, atol=1e-7)
