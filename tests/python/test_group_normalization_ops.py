"""InstanceNormalization and GroupNormalization on the CPU backend: the conformance tuples of
cuda_cases_group_normalization.py against ONNX Runtime, named errors for bad models, and PyTorch's
GroupNorm / InstanceNorm exported with torch.onnx.export(dynamo=True) against eager PyTorch.

torch 2.13's exporter writes nn.GroupNorm as Reshape -> InstanceNormalization (over [N, G, -1],
unit scale, zero bias) -> Reshape -> Mul -> Add, and nn.InstanceNorm2d as InstanceNormalization;
the tests check that the exported graphs contain those ops, so they exercise what they claim.

Tolerances: float32: rtol/atol 1e-5 against the ONNX definition in float64, 1e-4 against ONNX
Runtime (whose statistics are float32); float16 outputs (kiln and ONNX Runtime): max error
<= 4e-3 * max(1, max |y|) against the float64 definition (one or two float16 ulps).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import kiln
from cuda_cases_group_normalization import CASES
from kiln_testing import case_from_tuple, run_kiln, run_ort

TUPLE_CASES = [case_from_tuple(entry) for entry in CASES]


def test_tuples_cover_both_ops():
    assert {e[1] for e in CASES} == {"InstanceNormalization", "GroupNormalization"}


def typed_model(case, opset=None) -> onnx.ModelProto:
    """case.model(), except that ONNX has no shape inference for GroupNormalization (a function
    op), so its output is typed here like X; and the checker, which rejects the deprecated
    GroupNormalization-18, runs only for other opsets."""
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                  list(v.shape)) for name, v in case.feeds.items()]
    x = case.feeds["x"]
    outputs = [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(x.dtype),
                                             list(x.shape))]
    initializers = [onnx.numpy_helper.from_array(np.asarray(v), name)
                    for name, v in case.consts.items()]
    graph = helper.make_graph(case.nodes, case.id, graph_inputs, outputs, initializer=initializers)
    opset = opset or case.opset
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    if opset != 18:
        onnx.checker.check_model(model, full_check=True)
    return model


def reference(case) -> np.ndarray:
    """The ONNX definition in float64."""
    values = {**case.feeds, **case.consts}
    names = list(case.nodes[0].input)
    x, scale, bias = (values[n].astype(np.float64) for n in names)
    attrs = {a.name: helper.get_attribute_value(a) for a in case.nodes[0].attribute}
    epsilon = attrs.get("epsilon", 1e-5)
    n, c = x.shape[:2]
    groups = attrs.get("num_groups", c)
    rows = x.reshape(n, groups, -1)
    mean = rows.mean(axis=2, keepdims=True)
    var = ((rows - mean) ** 2).mean(axis=2, keepdims=True)
    normalized = ((rows - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    if scale.size != c:  # per group
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return normalized * scale.reshape(shape) + bias.reshape(shape)


def is_per_group(case) -> bool:
    values = {**case.feeds, **case.consts}
    return values[case.nodes[0].input[1]].size != case.feeds["x"].shape[1]


def test_tuples_cover_the_per_group_form():
    assert sum(is_per_group(c) for c in TUPLE_CASES) >= 3


@pytest.mark.parametrize("case", TUPLE_CASES, ids=[c.id for c in TUPLE_CASES])
def test_matches_onnxruntime_and_definition(case):
    # ONNX Runtime reads the per-group form at opset 18 only; kiln reads it at 18 and 21 alike.
    model = typed_model(case, opset=18 if is_per_group(case) else None)
    want = run_ort(model, case.feeds)["y"]
    got = run_kiln(model, case.feeds)["y"]
    if case.nodes[0].op_type == "InstanceNormalization":
        assert model.graph.output[0].type == case.model().graph.output[0].type
    if is_per_group(case):
        np.testing.assert_array_equal(run_kiln(typed_model(case), case.feeds)["y"], got)
    assert got.dtype == want.dtype and got.shape == want.shape
    exact = reference(case)
    if got.dtype == np.float16:
        # float16 rounding of the inputs is shared; the output's rounding (and ORT's) differs.
        scale = max(1.0, float(np.max(np.abs(exact))))
        for name, value in [("kiln", got), ("onnxruntime", want)]:
            err = float(np.max(np.abs(value.astype(np.float64) - exact)))
            assert err <= 4e-3 * scale, f"{name}: max abs error {err} vs scale {scale}"
    else:
        # kiln's statistics are in double: within 1e-5 of the definition; ONNX Runtime's are
        # float32, whose error grows where a group's variance is tiny relative to its values.
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5, err_msg="vs definition")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg="vs onnxruntime")


# ---- bad models -------------------------------------------------------------------------------

def norm_model(op, x_shape, param_shape, attrs, opset=21, dtype=TensorProto.FLOAT):
    node = helper.make_node(op, ["x", "scale", "bias"], ["y"], name="norm_node", **attrs)
    graph = helper.make_graph(
        [node], "norm",
        [helper.make_tensor_value_info("x", dtype, x_shape),
         helper.make_tensor_value_info("scale", dtype, param_shape),
         helper.make_tensor_value_info("bias", dtype, param_shape)],
        [helper.make_tensor_value_info("y", dtype, x_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model.SerializeToString()


@pytest.mark.parametrize("op, x_shape, param_shape, attrs, error, fragments", [
    ("GroupNormalization", [2, 6, 4, 4], [6], {"num_groups": 4}, kiln.InvalidArgumentError,
     ["norm_node", "not divisible by num_groups = 4"]),
    ("GroupNormalization", [2, 6, 4, 4], [6], {}, kiln.InvalidArgumentError,
     ["norm_node", "num_groups"]),
    ("GroupNormalization", [2, 6, 4, 4], [6], {"num_groups": 0}, kiln.InvalidArgumentError,
     ["norm_node", "num_groups' must be > 0"]),
    ("GroupNormalization", [2, 6, 4, 4], [4], {"num_groups": 3}, kiln.InvalidArgumentError,
     ["norm_node", "scale (input 1)", "[6]"]),
    ("GroupNormalization", [2, 6, 4, 4], [6], {"num_groups": 3, "stash_type": 7},
     kiln.UnsupportedError, ["norm_node", "stash_type"]),
    ("InstanceNormalization", [2, 6, 4, 4], [5], {}, kiln.InvalidArgumentError,
     ["norm_node", "scale (input 1)", "expected [6]"]),
    ("InstanceNormalization", [6], [6], {}, kiln.InvalidArgumentError,
     ["norm_node", "rank >= 2"]),
])
def test_bad_models_fail_with_named_errors(op, x_shape, param_shape, attrs, error, fragments):
    with pytest.raises(error) as info:
        kiln.build_onnx(norm_model(op, x_shape, param_shape, attrs))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_integer_input_is_unsupported():
    with pytest.raises(kiln.KilnError) as info:
        kiln.build_onnx(norm_model("InstanceNormalization", [1, 2, 3], [2], {}, opset=17,
                                   dtype=TensorProto.INT32))
    assert "norm_node" in str(info.value) or "InstanceNormalization" in str(info.value)


# ---- PyTorch modules exported with dynamo=True -------------------------------------------------

def export(module: torch.nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    program = torch.onnx.export(module.eval(), (x,), dynamo=True, verbose=False)
    return program.model_proto


def check_module(module: torch.nn.Module, x: torch.Tensor, expected_ops: set[str],
                 rtol=1e-5, atol=2e-5) -> onnx.ModelProto:
    model = export(module, x)
    ops = {n.op_type for n in model.graph.node}
    assert expected_ops <= ops, f"exported ops {sorted(ops)}"
    feed_name = model.graph.input[0].name
    got = run_kiln(model.SerializeToString(), {feed_name: x.numpy()})
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=rtol, atol=atol)
    return model


def with_random_affine(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if getattr(module, "weight", None) is not None:
            module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
            module.bias.copy_(torch.randn(module.bias.shape, generator=g))
    return module


@pytest.mark.parametrize("groups, channels, affine, shape", [
    (4, 8, True, (2, 8, 5, 5)),
    (1, 6, True, (3, 6, 7)),
    (32, 320, True, (1, 320, 16, 16)),
    (8, 8, False, (2, 8, 4, 4, 3)),
])
def test_torch_group_norm(groups, channels, affine, shape):
    module = with_random_affine(torch.nn.GroupNorm(groups, channels, affine=affine), groups)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 3 + 1
    model = check_module(module, x, {"InstanceNormalization"})
    # The exporter normalises over [N, G, -1]: one InstanceNormalization channel per group.
    norm = next(n for n in model.graph.node if n.op_type == "InstanceNormalization")
    assert norm.op_type == "InstanceNormalization"


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(2, 8, 9, 7), (1, 3, 64, 96)])
def test_torch_instance_norm_2d(affine, shape):
    module = with_random_affine(torch.nn.InstanceNorm2d(shape[1], affine=affine), shape[1])
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    check_module(module, x, {"InstanceNormalization"})


def test_torch_instance_norm_1d():
    module = with_random_affine(torch.nn.InstanceNorm1d(5, affine=True), 5)
    check_module(module, torch.randn(3, 5, 40, generator=torch.Generator().manual_seed(3)),
                 {"InstanceNormalization"})


class GroupNormResBlock(torch.nn.Module):
    """A diffusion-UNet / GroupNorm-ResNet block: GN -> SiLU -> Conv -> GN -> SiLU -> Conv + x."""

    def __init__(self, channels=32, groups=8):
        super().__init__()
        self.norm1 = with_random_affine(torch.nn.GroupNorm(groups, channels), 5)
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = with_random_affine(torch.nn.GroupNorm(groups, channels), 6)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        return x + self.conv2(torch.nn.functional.silu(self.norm2(h)))


def test_torch_group_norm_resnet_block():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 12, 12)
    check_module(GroupNormResBlock(), x, {"InstanceNormalization", "Conv"}, rtol=1e-4, atol=1e-4)


def test_group_normalization_opset21_graph_matches_torch():
    # A hand-written GroupNormalization-21 (the exporter does not emit it) against torch.
    gn = with_random_affine(torch.nn.GroupNorm(4, 12), 9)
    x = torch.randn(2, 12, 6, 6, generator=torch.Generator().manual_seed(4))
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"],
                            num_groups=4, epsilon=gn.eps)
    graph = helper.make_graph(
        [node], "gn21", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        initializer=[onnx.numpy_helper.from_array(gn.weight.detach().numpy(), "scale"),
                     onnx.numpy_helper.from_array(gn.bias.detach().numpy(), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    got = run_kiln(model.SerializeToString(), {"x": x.numpy()})["y"]
    with torch.no_grad():
        np.testing.assert_allclose(got, gn(x).numpy(), rtol=1e-5, atol=1e-5)
