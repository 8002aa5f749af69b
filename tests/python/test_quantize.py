"""kiln.quantize (python/kiln/_quantize.py, _calibration.py): post-training quantization into
explicit Q/DQ, checked for accuracy on models with learned weights and real data that ship with
a package: a small CNN and a small transformer classifier trained here on scikit-learn's bundled
handwritten digits (1,797 8x8 images; nothing is downloaded). Issue 15's accuracy bar: the INT8
and FP8 engines' test accuracy within 1 percentage point of the float model's. Run on kiln's CPU
engines (the Q/DQ graph runs as written there)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

import kiln
from kiln import _calibration

onnx = pytest.importorskip("onnx")
datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn carries the digits data")


def _digits():
    data = datasets.load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None]  # [n, 1, 8, 8] in [0, 1]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


class DigitsCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class EncoderBlock(torch.nn.Module):
    """Pre-norm self-attention and MLP, written out (torch's fused encoder layer does not export)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.qkv, self.out = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.GELU(),
                                       torch.nn.Linear(2 * width, width))

    def forward(self, x):
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-1, -2) / (w // self.heads) ** 0.5, dim=-1)
        x = x + self.out((attention @ v).transpose(1, 2).reshape(b, t, w))
        return x + self.mlp(self.norm2(x))


class DigitsTransformer(torch.nn.Module):
    """Each image row is a token of 8 pixels."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(8, 32)
        self.position = torch.nn.Parameter(torch.zeros(1, 8, 32))
        self.blocks = torch.nn.Sequential(EncoderBlock(32, 4), EncoderBlock(32, 4))
        self.norm = torch.nn.LayerNorm(32)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        tokens = self.embed(x.reshape(x.shape[0], 8, 8)) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


def _train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(ys), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[batch]), ys[batch]).backward()
            optimizer.step()
    return model.eval()


def _to_onnx(model: torch.nn.Module, batch: int) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(batch, 1, 8, 8),), buffer, input_names=["x"],
                          output_names=["logits"], opset_version=19, dynamo=False)
    return buffer.getvalue()


def _accuracy(engine_bytes: bytes, x: np.ndarray, y: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    engine = kiln.Engine(engine_bytes)
    logits = []
    for start in range(0, len(y) - batch + 1, batch):
        (only_output,) = engine.run({"x": x[start:start + batch]}).values()
        logits.append(only_output)
    engine.close()
    logits = np.concatenate(logits)
    return float((logits.argmax(1) == y[:len(logits)]).mean()), logits


BATCH = 50


@pytest.fixture(scope="module")
def digits():
    return _digits()


@pytest.fixture(scope="module", params=["cnn", "transformer"])
def trained(request, digits):
    (x_train, y_train), _ = digits
    torch.manual_seed(0)
    model = DigitsCnn() if request.param == "cnn" else DigitsTransformer()
    _train(model, x_train, y_train, epochs=8 if request.param == "cnn" else 15)
    return request.param, _to_onnx(model, BATCH)


def _calibration_batches(x_train: np.ndarray, count: int = 8):
    return [{"x": x_train[i * BATCH:(i + 1) * BATCH]} for i in range(count)]


@pytest.mark.parametrize("dtype,method", [("int8", "entropy"), ("int8", "minmax"),
                                          ("int8", "percentile"), ("fp8", "minmax")])
def test_quantized_engine_keeps_the_float_models_accuracy(trained, digits, dtype, method):
    name, model = trained
    (x_train, _), (x_test, y_test) = digits
    float_accuracy, float_logits = _accuracy(kiln.build_onnx(model), x_test, y_test, BATCH)
    assert float_accuracy > 0.9, f"{name} trained to {float_accuracy:.3f} only"
    quantized = kiln.quantize(model, _calibration_batches(x_train), dtype=dtype, method=method)
    ops = [n.op_type for n in quantized.graph.node]
    assert ops.count("DequantizeLinear") >= 2 * ops.count("QuantizeLinear") > 0
    accuracy, logits = _accuracy(kiln.build_onnx(quantized.SerializeToString()), x_test, y_test, BATCH)
    assert accuracy >= float_accuracy - 0.01, (
        f"{name} {dtype}/{method}: accuracy {accuracy:.4f} against float {float_accuracy:.4f}")
    cosine = float((logits * float_logits).sum() / np.linalg.norm(logits) / np.linalg.norm(float_logits))
    assert cosine >= 0.99, f"{name} {dtype}/{method}: logits' cosine similarity {cosine:.4f}"
    # The quantization is real: the logits are not the float model's to the last bit.
    assert not np.array_equal(logits, float_logits)
    # kiln.compare_engines reports the same agreement per output.
    report = kiln.compare_engines(kiln.build_onnx(quantized.SerializeToString()), kiln.build_onnx(model),
                                  {"x": x_test[:BATCH]}, atol=1e-2, rtol=1e-2)
    assert report.outputs[0].cosine >= 0.99 and report.outputs[0].top1_agreement >= 0.9


def test_every_conv_and_linear_is_quantized_and_the_report_says_so(trained, digits, capsys):
    name, model = trained
    (x_train, _), _ = digits
    quantized = kiln.quantize(model, _calibration_batches(x_train, 2), method="minmax", report=True)
    printed = capsys.readouterr().out
    report = json.loads(next(p.value for p in quantized.metadata_props
                             if p.key == "kiln_quantization_report"))
    original = onnx.load_model_from_string(model)
    weighted = [n for n in original.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                and n.input[1] in {t.name for t in original.graph.initializer}]
    assert report["quantized"] == len(weighted) > 0
    assert f"{len(weighted)} node(s) quantized" in printed
    # Weights are stored as int8 with one scale per output channel.
    int8 = [t for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT8
            and t.name.endswith("/quantized")]
    assert len(int8) == len({n.input[1] for n in weighted})


def test_excluded_nodes_stay_in_floating_point(trained, digits):
    name, model = trained
    (x_train, _), _ = digits
    weighted = [n for n in onnx.load_model_from_string(model).graph.node
                if n.op_type in ("Conv", "Gemm", "MatMul")]
    by_name = weighted[0].name  # one node by name, every Conv (the CNN) by op type
    exclude = [by_name, "Conv"] if name == "cnn" else [by_name]
    quantized = kiln.quantize(model, _calibration_batches(x_train, 2), method="minmax",
                              exclude=exclude)
    report = json.loads(next(p.value for p in quantized.metadata_props
                             if p.key == "kiln_quantization_report"))
    expected = {n.name for n in weighted if n.name == by_name or n.op_type in exclude}
    assert {k for k, v in report["kept"].items() if v == "excluded by the caller"} == expected
    nodes = {n.name: n for n in quantized.graph.node}
    assert all("kiln_quantize/" not in nodes[n].input[0] for n in expected)
    assert report["quantized"] > 0


def test_the_cache_makes_a_second_quantization_identical_without_data(digits, tmp_path):
    (x_train, _), _ = digits
    model = _to_onnx(_train(DigitsCnn(), x_train[:200], np.zeros(200, np.int64), 1), BATCH)
    cache = tmp_path / "ranges.json"
    first = kiln.quantize(model, _calibration_batches(x_train, 3), cache=cache)
    saved = json.loads(cache.read_text())
    assert saved["dtype"] == "int8" and saved["method"] == "entropy" and saved["amax"]
    second = kiln.quantize(model, None, cache=cache)
    assert first.SerializeToString() == second.SerializeToString()
    with pytest.raises(kiln.InvalidArgumentError, match="holds int8/entropy ranges, not int8/minmax"):
        kiln.quantize(model, None, cache=cache, method="minmax")
    saved["amax"].pop(next(iter(saved["amax"])))
    cache.write_text(json.dumps(saved))
    with pytest.raises(kiln.InvalidArgumentError, match="has no range for tensor"):
        kiln.quantize(model, None, cache=cache)
    negative = tmp_path / "negative.json"
    kiln.quantize(model, _calibration_batches(x_train, 1), cache=negative)
    ranges = json.loads(negative.read_text())
    ranges["amax"][next(iter(ranges["amax"]))] = -1.0
    negative.write_text(json.dumps(ranges))
    with pytest.raises(kiln.InvalidArgumentError, match="not a finite number >= 0"):
        kiln.quantize(model, None, cache=negative)
    with pytest.raises(kiln.InvalidArgumentError, match="calibration_batches are needed"):
        kiln.quantize(model, None, cache=tmp_path / "absent.json")
    cache.write_text("{not json")
    with pytest.raises(kiln.InvalidArgumentError, match="calibration cache"):
        kiln.quantize(model, None, cache=cache)


def test_bad_arguments_are_clear_errors(digits):
    (x_train, _), _ = digits
    model = _to_onnx(DigitsCnn().eval(), BATCH)
    with pytest.raises(kiln.InvalidArgumentError, match="dtype must be one of"):
        kiln.quantize(model, [], dtype="int4")
    with pytest.raises(kiln.InvalidArgumentError, match="method must be one of"):
        kiln.quantize(model, [], method="mse")
    with pytest.raises(kiln.InvalidArgumentError, match="no calibration batches"):
        kiln.quantize(model, [])
    with pytest.raises(kiln.InvalidArgumentError, match="lacks input"):
        kiln.quantize(model, [{"y": x_train[:BATCH]}])
    with pytest.raises(kiln.InvalidArgumentError, match="must be a torch.nn.Module, an ONNX file path"):
        kiln.quantize(42, [x_train[:BATCH]])
    old = onnx.load_model_from_string(model)
    old.opset_import[0].version = 11
    with pytest.raises(kiln.InvalidArgumentError, match="opset is 11; int8 Q/DQ needs opset 13"):
        kiln.quantize(old, [x_train[:BATCH]])
    no_weights = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]),
        opset_imports=[onnx.helper.make_opsetid("", 19)])
    with pytest.raises(kiln.UnsupportedError, match="no Conv, Gemm or MatMul"):
        kiln.quantize(no_weights, [np.zeros(1, np.float32)])


def test_observers_pick_ranges_that_clip_outliers_but_not_the_bulk():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(200_000).astype(np.float32)
    values[:3] = [40.0, -35.0, 30.0]  # rare outliers
    observer = _calibration.RangeObserver()
    observer.see_range(values)
    observer.see(values)
    assert observer.threshold("minmax", 99.99, 127) == pytest.approx(40.0)
    percentile = observer.threshold("percentile", 99.99, 127)
    entropy = observer.threshold("entropy", 99.99, 127)
    bulk = float(np.percentile(np.abs(values), 99.9))
    for threshold in (percentile, entropy):
        assert bulk <= threshold < 20.0, threshold
    empty = _calibration.RangeObserver()
    empty.see_range(np.zeros(4))
    empty.see(np.zeros(4))
    assert empty.threshold("entropy", 99.99, 127) == 0.0


def test_sensitivity_quantizes_each_layer_alone_and_ranks_them(trained, digits):
    name, model = trained
    (x_train, _), (x_test, _) = digits
    ranked = kiln.quantization_sensitivity(model, _calibration_batches(x_train, 2),
                                           [{"x": x_test[:BATCH]}], method="minmax")
    original = onnx.load_model_from_string(model)
    weights = {t.name for t in original.graph.initializer}
    expected = {n.name for n in original.graph.node
                if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in weights}
    assert {r.node for r in ranked} == expected
    cosines = [r.cosine for r in ranked]
    assert cosines == sorted(cosines)
    # One layer quantized changes the outputs a little, never to something else.
    assert all(0.99 <= c < 1.0 for c in cosines), ranked
    assert all(r.max_abs_error > 0 for r in ranked)


def test_a_torch_module_is_exported_and_quantized(digits):
    (x_train, y_train), (x_test, y_test) = digits
    torch.manual_seed(0)
    module = _train(DigitsCnn(), x_train, y_train, epochs=8)
    batches = [torch.from_numpy(x_train[i * BATCH:(i + 1) * BATCH]) for i in range(8)]
    quantized = kiln.quantize(module, batches, method="minmax")
    assert [i.name for i in quantized.graph.input] == ["x"]
    accuracy, _ = _accuracy(kiln.build_onnx(quantized.SerializeToString()), x_test, y_test, BATCH)
    with torch.no_grad():
        eager = float((module(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    assert accuracy >= eager - 0.01, (accuracy, eager)
    with pytest.raises(kiln.InvalidArgumentError, match="needs calibration batches"):
        kiln.quantize(module, [])
    with pytest.raises(kiln.InvalidArgumentError, match="not parameters of forward"):
        kiln.quantize(module, [{"image": batches[0]}])


def _calibrate_cli(*args):
    import os
    import subprocess
    import sys

    from kiln_testing import python_child_env

    return subprocess.run([sys.executable, "-m", "kiln.calibrate", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=python_child_env(dict(os.environ)))


def test_the_command_line_writes_a_quantized_model_from_a_folder_of_batches(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    torch.manual_seed(0)
    model = _to_onnx(_train(DigitsCnn(), x_train, y_train, epochs=8), BATCH)
    (tmp_path / "model.onnx").write_bytes(model)
    batches = tmp_path / "batches"
    batches.mkdir()
    for i, feeds in enumerate(_calibration_batches(x_train, 4)):
        np.savez(batches / f"{i:03d}.npz", **feeds)
    cache = tmp_path / "ranges.json"
    done = _calibrate_cli(tmp_path / "model.onnx", tmp_path / "int8.onnx", "--batches", batches,
                          "--method", "minmax", "--cache", cache, "--exclude", "Gemm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "node(s) quantized" in done.stdout and "kept /head/Gemm: excluded by the caller" in done.stdout
    api = kiln.quantize(model, [np.load(p) for p in sorted(batches.iterdir())], method="minmax",
                        exclude=["Gemm"])
    written = onnx.load(str(tmp_path / "int8.onnx"))
    assert written.graph == api.graph  # the same model as the Python call makes
    # The cache alone is enough the second time.
    again = _calibrate_cli(tmp_path / "model.onnx", tmp_path / "again.onnx", "--method", "minmax",
                           "--cache", cache, "--exclude", "Gemm")
    assert again.returncode == 0, again.stderr
    assert onnx.load(str(tmp_path / "again.onnx")).graph == written.graph
    single = tmp_path / "npy"
    single.mkdir()
    np.save(single / "0.npy", x_train[:BATCH])
    assert _calibrate_cli(tmp_path / "model.onnx", tmp_path / "npy.onnx", "--batches", single).returncode == 0


def test_the_command_line_names_bad_input(tmp_path):
    assert _calibrate_cli(tmp_path / "m.onnx", tmp_path / "o.onnx").returncode == 2  # no --batches
    missing = _calibrate_cli(tmp_path / "m.onnx", tmp_path / "o.onnx", "--batches", tmp_path / "nowhere")
    assert missing.returncode == 1 and "is not a folder" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = _calibrate_cli(tmp_path / "m.onnx", tmp_path / "o.onnx", "--batches", empty)
    assert none.returncode == 1 and "has no .npz or .npy file" in none.stderr
    (empty / "a.npy").write_bytes(b"not numpy")
    broken = _calibrate_cli(tmp_path / "m.onnx", tmp_path / "o.onnx", "--batches", empty)
    assert broken.returncode == 1 and "a.npy" in broken.stderr
