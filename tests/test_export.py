"""ONNX and safetensors exports: what they hold, that they compute what the PyTorch model does, that
the project's commands run them alike, and that a file that is not one is refused by name."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import load_file, save_file

from conftest import DEMO, save, trained_looking
from sr_core.checkpoint import load_model
from sr_core.commands.upscale import main as upscale_main
from sr_core.export import OPSET, agreement, write_checked
from sr_core.images import read_image
from sr_core.inference import SelfEnsemble, upscale
from sr_core.model import SRResNet
from sr_core.onnx_model import MODEL_CONFIG_KEY, OnnxModel
from sr_core.training import load_init_weights

def test_onnx_file_has_the_stated_contract(exported):
    model, onnx_path = exported.model, exported.onnx
    proto = onnx.load(onnx_path)
    onnx.checker.check_model(proto)
    assert [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")] == [OPSET]
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}  # folded into the convolutions
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert graph_input.name == "input" and graph_output.name == "output"
    batch, channels, height, width = dims(graph_input)
    assert channels == 3 and all(isinstance(d, str) for d in (batch, height, width))  # dynamic N, H, W
    assert dims(graph_output)[:2] == [batch, 3]
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert json.loads(metadata[MODEL_CONFIG_KEY]) == model.config.model_dump()


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 3, 9, 31)])
def test_onnxruntime_and_safetensors_compute_what_pytorch_does(exported, shape):
    model, onnx_path, safetensors_path = exported.model, exported.onnx, exported.safetensors
    lr_img = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(lr_img).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {"input": lr_img.numpy()})
    assert got.shape == want.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
    assert np.abs(got - want).max() <= 1e-4
    reloaded = load_model(safetensors_path, torch.device("cpu"))
    with torch.no_grad():
        assert np.abs(reloaded(lr_img).numpy() - want).max() <= 1e-4


def test_safetensors_file_holds_weights_and_config_only(exported):
    model, safetensors_path = exported.model, exported.safetensors
    tensors = load_file(safetensors_path)  # no pickle: the format has no code in it
    assert tensors.keys() == model.state_dict().keys()
    assert all(torch.equal(tensors[key], value) for key, value in model.state_dict().items())
    assert isinstance(load_model(safetensors_path, torch.device("cpu")), SRResNet)


def assert_same_pngs(got: dict, want: dict) -> None:
    """Each image as the other within 1 (in at most 1 value in 10,000: float rounding), alpha equal."""
    assert got.keys() == want.keys()
    for name, image in got.items():
        diff = np.abs(image.rgb.astype(int) - want[name].rgb.astype(int))
        assert (diff == 0).mean() >= 0.9999 and diff.max() <= 1, name
        assert np.array_equal(image.alpha, want[name].alpha) if want[name].alpha is not None else image.alpha is None


@pytest.mark.parametrize("exported", ["demo"], indirect=True)  # each variant's formats agree: the test above
def test_upscale_gives_the_same_pngs_with_each_format_and_with_self_ensemble(exported, tmp_path, rng):
    """sr-upscale's PNGs from the .pt, the .onnx and the .safetensors (tiled, batched, RGBA), and
    the self-ensemble over onnxruntime."""
    model, onnx_path = exported.model, exported.onnx
    save(tmp_path / "in" / "a.png", rng.integers(0, 256, (21, 34, 3), dtype=np.uint8))
    save(tmp_path / "in" / "b.png", rng.integers(0, 256, (50, 45, 4), dtype=np.uint8))  # RGBA, and tiled below
    save(tmp_path / "in" / "c.png", rng.integers(0, 256, (21, 34, 3), dtype=np.uint8))  # batched with a.png

    def upscaled(model_path: Path, *options: str) -> dict:
        out = tmp_path / f"{model_path.suffix[1:]}{''.join(options)}"
        upscale_main([str(model_path), str(tmp_path / "in"), "--out", str(out), "--tile", "24", *options])
        return {png.name: read_image(png) for png in sorted(out.iterdir())}

    outputs = {path.suffix: upscaled(path) for path in (exported.checkpoint, onnx_path, exported.safetensors)}
    assert outputs[".pt"].keys() == {"a.png", "b.png", "c.png"}
    for suffix in (".onnx", ".safetensors"):
        assert_same_pngs(outputs[suffix], outputs[".pt"])
    a = read_image(tmp_path / "in" / "a.png").rgb
    assert np.abs(outputs[".pt"]["a.png"].rgb.astype(int) - upscale(model, a)).max() <= 1
    # the self-ensemble wraps whatever runs the file (here onnxruntime) and gives PyTorch's x8
    x8 = upscaled(onnx_path, "--self-ensemble")
    assert np.abs(x8["a.png"].rgb.astype(int) - upscale(SelfEnsemble(model), a)).max() <= 1
    assert not np.array_equal(x8["a.png"].rgb, outputs[".onnx"]["a.png"].rgb)


@pytest.mark.parametrize("exported", ["demo"], indirect=True)
def test_the_command_writes_each_file_and_prints_its_agreement(exported):
    """sr-export's files (named by the model's stem, dots and all, in --out) and their agreement
    lines, as the session's export wrote them; the fp16 file takes float16 and agrees to 5e-3."""
    out = exported.onnx.parent
    written = [out / f"best.v2.{suffix}" for suffix in ("onnx", "safetensors", "fp16.onnx")]
    assert sorted(out.iterdir()) == sorted(written)
    for path in written:
        assert f"{path}: max abs difference " in exported.logged
    fp16 = load_model(written[2], torch.device("cpu"))
    assert isinstance(fp16, OnnxModel) and fp16.input_dtype == np.float16
    check = agreement(exported.model, fp16)
    assert check.max_abs < 5e-3 and check.uint8_max_diff <= 1


def test_an_export_that_disagrees_is_not_written(tmp_path):
    model, other = trained_looking(DEMO), trained_looking(DEMO.model_copy(update=dict(res_scale=0.5)))
    target = tmp_path / "best.safetensors"
    with pytest.raises(ValueError, match=f"{target}: not written: the export disagrees with the PyTorch model"):
        write_checked(target, b"anything", model, lambda written: other, 1e-4)
    assert list(tmp_path.iterdir()) == []


def onnx_file(path, input_shape, output_shape, op="Identity", metadata=None, **attributes):
    """A one-node ONNX model: what a foreign model looks like to the loader."""
    graph = helper.make_graph([helper.make_node(op, ["input"], ["output"], **attributes)], "foreign",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def bad_onnx_files(folder, good):
    """(file, what the error must say) for ONNX files this project cannot run."""
    config = json.dumps(DEMO.model_dump())
    damaged = folder / "damaged.onnx"
    damaged.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    noise = folder / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    return [
        (damaged, "not an ONNX model, or damaged"),
        (noise, "not an ONNX model, or damaged"),
        (onnx_file(folder / "rank2.onnx", ["N", 3], ["N", 3]), "not a super-resolution model: its input 'input' is"),
        (onnx_file(folder / "grey.onnx", ["N", 1, "H", "W"], ["N", 1, "H", "W"]),
         "not a super-resolution model: its input 'input' is ['N', 1, 'H', 'W'], not (N, 3, height, width)"),
        (onnx_file(folder / "features.onnx", ["N", 3, 224, 224], ["N", 150528], op="Flatten", axis=1),
         "not a super-resolution model: its output 'output' is ['N', 150528]"),
        (onnx_file(folder / "foreign_sr.onnx", ["N", 3, "H", "W"], ["N", 3, "H", "W"]),
         f"an ONNX model without '{MODEL_CONFIG_KEY}' in its metadata"),
        (onnx_file(folder / "bad_config.onnx", ["N", 3, "H", "W"], ["N", 3, "H", "W"],
                   metadata={MODEL_CONFIG_KEY: config.replace("num_blocks", "blocks")}), "unknown key blocks"),
    ]


def bad_safetensors_files(folder, good):
    """(file, what the error must say) for safetensors files that do not hold a model of this project."""
    tensors, config = load_file(good), {MODEL_CONFIG_KEY: json.dumps(DEMO.model_dump())}
    missing, misshapen = dict(tensors), dict(tensors)
    del missing["tail.weight"]
    misshapen["tail.weight"] = torch.zeros(3, 16, 9, 9)
    save_file(missing, folder / "missing.safetensors", metadata=config)
    save_file(misshapen, folder / "misshapen.safetensors", metadata=config)
    save_file(tensors, folder / "no_config.safetensors")
    (folder / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(5000))
    return [
        (folder / "missing.safetensors", 'the weights do not fit its model_config'),
        (folder / "misshapen.safetensors", "size mismatch for tail.weight"),
        (folder / "no_config.safetensors", f"no '{MODEL_CONFIG_KEY}' in its metadata"),
        (folder / "noise.safetensors", "not a safetensors file, or damaged"),
    ]


@pytest.mark.parametrize("exported", ["demo"], indirect=True)
def test_files_that_are_not_exports_are_refused_by_name(exported, tmp_path, command_line):
    cases = bad_onnx_files(tmp_path, exported.onnx) + bad_safetensors_files(tmp_path, exported.safetensors)
    for path, message in cases:
        with pytest.raises(ValueError) as error:
            load_model(path, torch.device("cpu"))
        assert str(error.value).startswith(f"{path}: ") and message in str(error.value), (path, str(error.value))
    # through the command: one line naming the file
    save(tmp_path / "in" / "a.png", np.zeros((8, 8, 3), np.uint8))
    damaged = tmp_path / "damaged.onnx"
    result = command_line(upscale_main, damaged, tmp_path / "in", "--out", tmp_path / "out")
    assert result.status == 1
    assert result.err.startswith(f"error: {damaged}: not an ONNX model, or damaged")
    assert len(result.err.strip().splitlines()) == 2  # the error, and how to see the traceback


def test_an_onnx_export_is_no_starting_point_for_training(exported):
    model, onnx_path, safetensors_path = exported.model, exported.onnx, exported.safetensors
    with pytest.raises(ValueError, match=f"train.init_from {onnx_path}: an ONNX model's weights are not trainable"):
        load_init_weights(SRResNet(model.config), str(onnx_path))
    fresh = SRResNet(model.config)
    load_init_weights(fresh, str(safetensors_path))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
