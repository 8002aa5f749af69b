"""RNN, GRU and LSTM on the CPU (no CUDA kernels): against ONNX Runtime over every direction, with
and without bias, initial states, sequence_lens (varied, including 0), peepholes, clip, layout = 1,
linear_before_reset, input_forget, non-default activations and omitted outputs; torch.nn.LSTM/GRU/
RNN exported to ONNX against eager torch; bad shapes and attributes are errors naming the node;
a CUDA build refuses the layer by name."""

from __future__ import annotations

import numpy as np
import pytest
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import run_ort

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
INPUT_NAMES = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
OUTPUT_NAMES = ["Y", "Y_h", "Y_c"]


def _make_case(op, *, seq=5, batch=3, input_size=4, hidden=6, direction="forward", bias=True, initial=False,
               lens=None, peepholes=False, layout=0, outputs=None, seed=0, dtype=np.float32, opset=22, **attrs):
    """Builds the model and feeds of one case: `outputs` lists the output names to request ("" to
    leave one out); the graph inputs are the tensors given."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    rows = GATES[op] * hidden
    # Drawn in layout 0's order, then transposed: a layout = 1 case holds the same values.
    x_shape, state_shape = (seq, batch, input_size), (dirs, batch, hidden)
    feeds = {"X": rng.standard_normal(x_shape), "W": rng.standard_normal((dirs, rows, input_size)) * 0.5,
             "R": rng.standard_normal((dirs, rows, hidden)) * 0.5}
    if bias:
        feeds["B"] = rng.standard_normal((dirs, 2 * rows)) * 0.5
    if lens is not None:
        feeds["sequence_lens"] = np.asarray(lens, dtype=np.int32)
    if initial:
        feeds["initial_h"] = rng.standard_normal(state_shape)
        if op == "LSTM":
            feeds["initial_c"] = rng.standard_normal(state_shape)
    if peepholes:
        feeds["P"] = rng.standard_normal((dirs, 3 * hidden)) * 0.5
    feeds = {k: v if k == "sequence_lens" else v.astype(dtype) for k, v in feeds.items()}
    if layout:
        feeds = {k: v.swapaxes(0, 1).copy() if k in ("X", "initial_h", "initial_c") else v for k, v in feeds.items()}
    present = [i for i, name in enumerate(INPUT_NAMES) if name in feeds]
    inputs = [INPUT_NAMES[i] if i in present else "" for i in range(max(present) + 1)]
    if outputs is None:
        outputs = OUTPUT_NAMES[: 3 if op == "LSTM" else 2]
    node = helper.make_node(op, inputs, outputs, name=f"{op.lower()}_layer", hidden_size=hidden, direction=direction,
                            **({"layout": layout} if layout else {}), **attrs)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    graph_inputs = [helper.make_tensor_value_info(k, TensorProto.INT32 if k == "sequence_lens" else elem, v.shape)
                    for k, v in feeds.items()]
    graph_outputs = [helper.make_tensor_value_info(name, elem, None) for name in outputs if name]
    graph = helper.make_graph([node], "g", graph_inputs, graph_outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), feeds


def _run_kiln(model, feeds):
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)


def _to_batch_first(outputs):
    return {k: v.transpose(2, 0, 1, 3) if k == "Y" else v.swapaxes(0, 1) for k, v in outputs.items()}


def _check_against_ort(op, atol=2e-5, **case):
    """Runs one case on kiln and ONNX Runtime. ONNX Runtime's CPU kernels refuse layout = 1, so a
    layout = 1 case is checked against the same values in layout 0, transposed."""
    model, feeds = _make_case(op, **case)
    got = _run_kiln(model, feeds)
    if case.get("layout"):
        model0, feeds0 = _make_case(op, **dict(case, layout=0))
        want = _to_batch_first(run_ort(model0, feeds0))
    else:
        want = run_ort(model, feeds)
    assert list(got) == list(want)
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        assert got[name].dtype == ref.dtype, name
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=atol, err_msg=name)
    return got


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("bias,initial", [(False, False), (True, True)])
def test_directions_bias_and_initial_states_match_onnx_runtime(op, direction, bias, initial):
    _check_against_ort(op, direction=direction, bias=bias, initial=initial)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_sequence_lens_match_onnx_runtime(op, direction, layout):
    got = _check_against_ort(op, direction=direction, layout=layout, initial=True, lens=[5, 2, 0, 4], batch=4,
                             seed=1)
    y = got["Y"] if layout == 0 else got["Y"].transpose(1, 2, 0, 3)  # -> [seq, dirs, batch, hidden]
    assert np.all(y[2:, :, 1] == 0) and np.all(y[:, :, 2] == 0)  # past each row's length
    assert np.any(y[1, :, 1] != 0)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("seq,batch,input_size,hidden", [(1, 1, 1, 1), (7, 2, 3, 5), (12, 5, 10, 16)])
def test_sizes_match_onnx_runtime(op, seq, batch, input_size, hidden):
    _check_against_ort(op, seq=seq, batch=batch, input_size=input_size, hidden=hidden, initial=True,
                       direction="bidirectional", seed=seq)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_layout_1_and_clip_match_onnx_runtime(op):
    got = _check_against_ort(op, layout=1, clip=0.5, initial=True, direction="bidirectional", seed=2)
    assert got["Y"].shape == (3, 5, 2, 6)


@pytest.mark.parametrize("input_forget", [0, 1])
def test_lstm_peepholes_and_input_forget_match_onnx_runtime(input_forget):
    _check_against_ort("LSTM", peepholes=True, initial=True, input_forget=input_forget, lens=[3, 5, 1],
                       direction="bidirectional", seed=3)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_linear_before_reset_matches_onnx_runtime(direction):
    _check_against_ort("GRU", linear_before_reset=1, initial=True, direction=direction, lens=[5, 3, 4], seed=4)


# (op, activations of one direction, activation_alpha, activation_beta)
ACTIVATION_CASES = [
    ("RNN", ["Relu"], None, None),
    ("RNN", ["Sigmoid"], None, None),
    ("RNN", ["Affine"], [0.7], [0.2]),
    ("RNN", ["LeakyRelu"], None, None),
    ("RNN", ["LeakyRelu"], [0.2], None),
    ("RNN", ["ThresholdedRelu"], [0.3], None),
    ("RNN", ["ScaledTanh"], [1.5], [0.6]),
    ("RNN", ["HardSigmoid"], None, None),
    ("RNN", ["HardSigmoid"], [0.3], [0.4]),
    ("RNN", ["Elu"], None, None),
    ("RNN", ["Elu"], [0.5], None),
    ("RNN", ["Softsign"], None, None),
    ("RNN", ["Softplus"], None, None),
    ("GRU", ["HardSigmoid", "Softsign"], [0.25], [0.45]),
    ("GRU", ["Sigmoid", "LeakyRelu"], [0.1], None),
    ("LSTM", ["HardSigmoid", "Tanh", "Softsign"], None, None),
    ("LSTM", ["Sigmoid", "Elu", "ScaledTanh"], [0.8, 1.2], [0.9]),
]


@pytest.mark.parametrize("op,activations,alpha,beta", ACTIVATION_CASES)
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_activations_match_onnx_runtime(op, activations, alpha, beta, direction):
    copies = 2 if direction == "bidirectional" else 1
    attrs = {"activations": activations * copies}
    if alpha:
        attrs["activation_alpha"] = alpha * copies
    if beta:
        attrs["activation_beta"] = beta * copies
    _check_against_ort(op, direction=direction, initial=True, seed=5, **attrs)


def test_bidirectional_directions_take_their_own_activations():
    _check_against_ort("RNN", direction="bidirectional", activations=["Tanh", "LeakyRelu"], activation_alpha=[0.3])


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("outputs", [["Y"], ["", "Y_h"], ["", "", "Y_c"], ["Y", "", "Y_c"]])
def test_omitted_outputs(op, outputs):
    if op != "LSTM" and len(outputs) == 3:
        pytest.skip("RNN and GRU have two outputs")
    got = _check_against_ort(op, outputs=outputs, direction="reverse", initial=True, lens=[2, 5, 4], seed=6)
    assert list(got) == [name for name in outputs if name]


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_float64_matches_onnx_reference(op):
    # ONNX Runtime's CPU kernels take float32 only; onnx's reference evaluator computes in float64
    # (it ignores sequence_lens and clip, which these cases leave out).
    model, feeds = _make_case(op, dtype=np.float64, direction="bidirectional", initial=True)
    got = _run_kiln(model, feeds)
    want = ReferenceEvaluator(model).run(None, feeds)
    assert [v.dtype for v in got.values()] == [np.float64] * len(want)
    for g, w in zip(got.values(), want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("opset", [7, 14])
def test_older_opsets(opset):
    _check_against_ort("LSTM", opset=opset, initial=True, peepholes=True, lens=[4, 5, 1])
    _check_against_ort("GRU", opset=opset, initial=True, linear_before_reset=1)


def test_dynamic_sequence_and_batch_dims():
    model, feeds = _make_case("LSTM", direction="bidirectional", initial=True)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        if graph_input.name == "X":
            dims[0].dim_param, dims[1].dim_param = "seq", "batch"
        elif graph_input.name in ("initial_h", "initial_c"):
            dims[1].dim_param = "batch"
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu", profiles={
        "X": ([1, 1, 4], [5, 3, 4], [9, 4, 4]),
        "initial_h": ([2, 1, 6], [2, 3, 6], [2, 4, 6]),
        "initial_c": ([2, 1, 6], [2, 3, 6], [2, 4, 6])}))
    for seq, batch in [(5, 3), (2, 1), (9, 4)]:
        rng = np.random.default_rng(seq)
        run_feeds = dict(feeds, X=rng.standard_normal((seq, batch, 4)).astype(np.float32),
                         initial_h=rng.standard_normal((2, batch, 6)).astype(np.float32),
                         initial_c=rng.standard_normal((2, batch, 6)).astype(np.float32))
        got, want = engine.run(run_feeds), run_ort(model, run_feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=2e-5, err_msg=name)


# ---- torch.nn modules exported to ONNX ---------------------------------------------------------

torch = pytest.importorskip("torch")


class _Recurrent(torch.nn.Module):
    def __init__(self, kind, **kwargs):
        super().__init__()
        self.layer = getattr(torch.nn, kind)(**kwargs)

    def forward(self, x, h0):
        y, state = self.layer(x, h0)
        return (y, *state) if isinstance(state, tuple) else (y, state)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional,batch_first,layers", [(False, False, 1), (True, True, 2)])
@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_modules_exported_to_onnx_match_eager_torch(tmp_path, kind, bidirectional, batch_first, layers, dynamo):
    torch.manual_seed(0)
    kwargs = {"nonlinearity": "relu"} if kind == "RNN" and layers == 2 else {}
    module = _Recurrent(kind, input_size=5, hidden_size=7, num_layers=layers, bidirectional=bidirectional,
                        batch_first=batch_first, **kwargs).eval()
    dirs = 2 if bidirectional else 1
    x = torch.randn((3, 6, 5) if batch_first else (6, 3, 5))
    h0 = torch.randn(layers * dirs, 3, 7)
    state = (h0, torch.randn(layers * dirs, 3, 7)) if kind == "LSTM" else h0
    path = tmp_path / f"{kind}.onnx"
    # The TorchScript exporter writes ONNX LSTM/GRU/RNN nodes, one per layer; the dynamo one writes
    # LSTM and GRU nodes but unrolls nn.RNN into MatMul/Add/Tanh.
    torch.onnx.export(module, (x, state), str(path), dynamo=dynamo, opset_version=17 if not dynamo else 18)
    exported = onnx.load(str(path))
    ops = {n.op_type for n in exported.graph.node}
    assert (kind not in ops) if (dynamo and kind == "RNN") else (kind in ops), ops  # dynamo unrolls nn.RNN
    feeds = {i.name: t.numpy() for i, t in zip(exported.graph.input, [x, *(state if kind == "LSTM" else [state])])}
    with torch.no_grad():
        want = module(x, state)
    got = kiln.Engine(kiln.build_onnx(exported, target="cpu")).run(feeds)
    assert len(got) == len(want)
    for g, w in zip(got.values(), want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=2e-5)


# ---- errors ----------------------------------------------------------------------------------


def test_hidden_size_that_disagrees_with_w_is_an_error_naming_the_node():
    model, _ = _make_case("LSTM", hidden=6)
    next(a for a in model.graph.node[0].attribute if a.name == "hidden_size").i = 5
    with pytest.raises(kiln.KilnError, match=r"lstm_layer.*input 1 \(W\) must be \[1, 20, 4\] "
                       r"\(\[num_directions, 4 \* hidden_size, input_size\] with hidden_size 5\), got \[1, 24, 4\]"):
        kiln.build_onnx(model, target="cpu")


def test_unsupported_activation_is_an_error_naming_the_node():
    model, _ = _make_case("GRU", activations=["Sigmoid", "Gelu"])
    with pytest.raises(kiln.KilnError, match=r"gru_layer.*unsupported activation function 'Gelu'"):
        kiln.build_onnx(model, target="cpu")


def test_activation_without_a_settled_default_is_refused_naming_the_node():
    model, _ = _make_case("RNN", activations=["Affine"])
    with pytest.raises(kiln.KilnError, match=r"rnn_layer.*'Affine' needs a value in attribute 'activation_alpha'"):
        kiln.build_onnx(model, target="cpu")


def test_wrong_activation_count_is_an_error_naming_the_node():
    model, _ = _make_case("RNN", direction="bidirectional", activations=["Tanh"])
    with pytest.raises(kiln.KilnError, match=r"rnn_layer.*'activations' must hold 2 functions"):
        kiln.build_onnx(model, target="cpu")


def test_sequence_length_past_the_sequence_is_an_error_naming_the_node():
    model, feeds = _make_case("GRU", lens=[5, 6, 1])
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"gru_layer.*sequence_lens\) holds 6 for batch row 1"):
        engine.run(feeds)


def test_cuda_build_refuses_the_layer_by_name():
    # No CUDA kernel: the build checks what a load checks, so the engine is refused there, naming
    # the layer (kiln.compile then leaves the layer to PyTorch).
    model, _ = _make_case("LSTM")
    try:
        engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, allow_host_layers=False)
    except kiln.KilnError as error:
        assert "host layers are not allowed (allow_host_layers):\n  layer 'lstm_layer' (op 'LSTM'): the cuda backend has no kernel" in str(error)
        return
    with pytest.raises(kiln.KilnError, match="built without CUDA"):  # a runtime without the CUDA backend
        kiln.Engine(engine)
    pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")


def test_opset_6_lstm_output_sequence_does_not_change_the_values():
    # LSTM-1 (what an opset-6 model names) has `output_sequence`, which only says Y may be left out.
    model6, feeds = _make_case("LSTM", opset=6, output_sequence=1, initial=True, direction="bidirectional")
    model7, _ = _make_case("LSTM", opset=7, initial=True, direction="bidirectional")
    got, want = _run_kiln(model6, feeds), run_ort(model7, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=2e-5, err_msg=name)
