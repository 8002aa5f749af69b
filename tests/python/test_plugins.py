"""Plugin libraries (include/kiln/plugin.h, docs/plugins.md) with the C test plugin
tests/plugins/test_plugin.c: ONNX nodes of domain kiln.test become plugin layers, built and run
through the CLI (--plugins, LD_PRELOAD) and Python (kiln.load_plugin_library, LD_PRELOAD); an engine
whose plugin is not registered fails at load, naming it; kiln inspect lists an engine's plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kiln
from kiln_testing import python_child_env


@pytest.fixture(scope="module")
def plugin_path(build_dir):
    path = build_dir / "tests" / "plugins" / "libkiln_test_plugin.so"
    assert path.is_file(), f"{path} not built (target kiln_test_plugin)"
    return str(path)


def plugin_model(scaled_attrs=None, version=None) -> onnx.ModelProto:
    """S = ScaledAdd(A, B), Y = Relu(S), Z = KeepPositive(S) (its length depends on S's values)."""
    attrs = {"alpha": 2.0} if scaled_attrs is None else scaled_attrs
    if version is not None:
        attrs = {**attrs, "kiln_plugin_version": version}
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["n", 3])
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("ScaledAdd", ["A", "B"], ["S"], domain="kiln.test", name="scaled", **attrs),
        helper.make_node("Relu", ["S"], ["Y"], name="relu"),
        helper.make_node("KeepPositive", ["S"], ["Z"], domain="kiln.test", name="keep", threshold=0.5),
    ]
    graph = helper.make_graph(nodes, "plugins", [a, b], [y, z])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("kiln.test", 1)])


def expected(a, b, alpha=2.0, beta=0.0):
    s = a + alpha * b + beta
    return np.maximum(s, 0), s.reshape(-1)[s.reshape(-1) > 0.5]


def feeds(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"A": rng.standard_normal((n, 3)).astype(np.float32), "B": rng.standard_normal((n, 3)).astype(np.float32)}


def cli(kiln_cli, *args, env=None, expect=0):
    result = subprocess.run([str(kiln_cli), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == expect, f"kiln {' '.join(map(str, args))}: rc {result.returncode}\n{result.stderr}"
    return result


def write_inputs(directory, inputs):
    args = []
    for name, value in inputs.items():
        path = directory / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    return args


@pytest.fixture(scope="module")
def cli_engine(tmp_path_factory, kiln_cli, plugin_path):
    work = tmp_path_factory.mktemp("plugins")
    onnx.save(plugin_model(), work / "m.onnx")
    cli(kiln_cli, "build", work / "m.onnx", "-o", work / "m.kiln", "--plugins", plugin_path,
        "--profile", "A:min=1x3,opt=2x3,max=8x3", "--profile", "B:min=1x3,opt=2x3,max=8x3")
    return work


def run_and_check(kiln_cli, work, extra_args, env=None):
    inputs = feeds(5)
    out_dir = work / "out"
    cli(kiln_cli, "run", work / "m.kiln", *write_inputs(work, inputs), "--output-dir", out_dir, *extra_args, env=env)
    want_y, want_z = expected(inputs["A"], inputs["B"])
    np.testing.assert_allclose(np.load(out_dir / "Y.npy"), want_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.load(out_dir / "Z.npy"), want_z, rtol=1e-6, atol=1e-6)


def test_cli_builds_and_runs_with_plugins_flag(kiln_cli, cli_engine, plugin_path):
    run_and_check(kiln_cli, cli_engine, ["--plugins", plugin_path])


@pytest.mark.parametrize("io", [[], ["--host-io"]])
def test_cli_bench_loads_plugins(kiln_cli, cli_engine, plugin_path, io):
    # Bound mode sizes the data-dependent output (Z) to its upper bound, which the bound call needs.
    out = cli(kiln_cli, "bench", cli_engine / "m.kiln", "--iterations", 3, "--warmup", 1, "--plugins", plugin_path,
              *io, "--json").stdout
    assert json.loads(out)["iterations"] == 3


def test_cli_runs_with_the_plugin_preloaded(kiln_cli, cli_engine, plugin_path):
    if os.environ.get("KILN_SANITIZER_PRELOAD"):
        pytest.skip("the CLI refuses a second sanitizer runtime in LD_PRELOAD")
    run_and_check(kiln_cli, cli_engine, [], env={**os.environ, "LD_PRELOAD": plugin_path})


def test_cli_run_without_the_plugin_names_it(kiln_cli, cli_engine):
    result = cli(kiln_cli, "run", cli_engine / "m.kiln", "--random", expect=1)
    assert "needs plugin kiln.test::ScaledAdd v2" in result.stderr, result.stderr
    assert "provided at build time by libkiln_test_plugin.so" in result.stderr, result.stderr
    assert "not registered" in result.stderr and "--plugins" in result.stderr, result.stderr


def test_cli_build_without_the_plugin_lists_the_unsupported_nodes(kiln_cli, cli_engine):
    result = cli(kiln_cli, "build", cli_engine / "m.onnx", "-o", cli_engine / "x.kiln", expect=1)
    assert "2 unsupported nodes" in result.stderr, result.stderr
    assert "node 'scaled': op 'ScaledAdd' (domain 'kiln.test'" in result.stderr, result.stderr
    assert "no plugin registers kiln.test::KeepPositive" in result.stderr, result.stderr


def test_cli_inspect_lists_plugins(kiln_cli, cli_engine):
    text = cli(kiln_cli, "inspect", cli_engine / "m.kiln").stdout
    assert "plugins (2):" in text, text
    assert "kiln.test::ScaledAdd v2 from libkiln_test_plugin.so" in text, text
    assert "fields: alpha=2 beta=0" in text, text
    assert "kiln.test::KeepPositive v1 from libkiln_test_plugin.so" in text, text
    doc = json.loads(cli(kiln_cli, "inspect", cli_engine / "m.kiln", "--json").stdout)
    scaled = doc["plugins"][0]
    assert scaled["namespace"] == "kiln.test" and scaled["name"] == "ScaledAdd" and scaled["version"] == "2"
    assert scaled["library"] == "libkiln_test_plugin.so"
    assert set(scaled["fields"]) == {"alpha", "beta"}
    assert [layer["op"] for layer in doc["layers"]] == ["Plugin", "Relu", "PluginDataDependent"]


def test_python_loads_the_plugin_by_dlopen_and_runs_it(plugin_path):
    assert kiln.load_plugin_library(plugin_path) == plugin_path
    kiln.load_plugin_library(plugin_path)  # again: harmless
    engine = kiln.Engine(kiln.build_onnx(plugin_model(), profiles={"A": ((1, 3), (2, 3), (8, 3)),
                                                                   "B": ((1, 3), (2, 3), (8, 3))}))
    for n in (1, 4, 8):
        inputs = feeds(n, seed=n)
        got = engine.run(inputs)
        want_y, want_z = expected(inputs["A"], inputs["B"])
        np.testing.assert_allclose(got["Y"], want_y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["Z"], want_z, rtol=1e-6, atol=1e-6)


def test_node_can_ask_for_an_older_plugin_version(plugin_path):
    kiln.load_plugin_library(plugin_path)
    # v1 has no beta field; v2 (the default) would accept it.
    with pytest.raises(kiln.InvalidArgumentError, match="attribute 'beta' is not a field of plugin kiln.test::ScaledAdd v1"):
        kiln.build_onnx(plugin_model({"alpha": 1.0, "beta": 3.0}, version=1),
                        profiles={"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 3), (2, 3), (2, 3))})
    profiles = {"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 3), (2, 3), (2, 3))}
    v2 = kiln.Engine(kiln.build_onnx(plugin_model({"alpha": 1.0, "beta": 3.0}), profiles=profiles))
    inputs = feeds(2)
    np.testing.assert_allclose(v2.run(inputs)["Y"], expected(inputs["A"], inputs["B"], 1.0, 3.0)[0], rtol=1e-6)
    with pytest.raises(kiln.NotFoundError, match="asks for plugin version 5 but the registered versions are 1, 2"):
        kiln.build_onnx(plugin_model(version=5), profiles=profiles)


@pytest.mark.parametrize("attrs, message", [
    ({"alpha": 1.0, "gamma": 1.0}, "node 'scaled' (kiln.test::ScaledAdd): attribute 'gamma' is not a field of plugin "
                                   "kiln.test::ScaledAdd v2 (libkiln_test_plugin.so), which takes: alpha, beta"),
    ({"alpha": 1}, "attribute 'alpha' is int but plugin kiln.test::ScaledAdd v2 (libkiln_test_plugin.so) takes it as float"),
    ({}, "plugin kiln.test::ScaledAdd v2 (libkiln_test_plugin.so) needs attribute 'alpha' (float)"),
    ({"alpha": float("nan")}, "plugin kiln.test::ScaledAdd v2 (libkiln_test_plugin.so) create: alpha must not be NaN"),
])
def test_node_attributes_are_checked_against_the_plugin_fields(plugin_path, attrs, message):
    kiln.load_plugin_library(plugin_path)
    with pytest.raises(kiln.InvalidArgumentError) as error:
        kiln.build_onnx(plugin_model(attrs), profiles={"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 3), (2, 3), (2, 3))})
    assert message in str(error.value)


def test_plugin_shape_errors_name_the_node_and_the_plugin(plugin_path):
    kiln.load_plugin_library(plugin_path)
    model = plugin_model()
    model.graph.input[1].type.tensor_type.shape.dim[1].dim_value = 4
    with pytest.raises(kiln.InvalidArgumentError) as error:
        kiln.build_onnx(model, profiles={"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 4), (2, 4), (2, 4))})
    assert ("node 'scaled' (Plugin): plugin kiln.test::ScaledAdd v2 (libkiln_test_plugin.so) infer: "
            "A and B differ in dimension 1 (3 vs 4)") in str(error.value)


def test_plugin_refuses_dtypes_it_does_not_take(plugin_path):
    kiln.load_plugin_library(plugin_path)
    model = plugin_model()
    for value in list(model.graph.input):
        value.type.tensor_type.elem_type = TensorProto.DOUBLE
    with pytest.raises(kiln.UnsupportedError, match=r"does not take input dtypes \(float64, float64\): takes float32"):
        kiln.build_onnx(model, profiles={"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 3), (2, 3), (2, 3))})


def test_cuda_builds_refuse_plugins_without_a_cuda_implementation(plugin_path):
    # The test plugin has execute_cpu only. Cross-compiling (cuda_arch) reaches the check without a
    # GPU, even in a build without CUDA; the error names the node, the plugin, its library and the
    # backend.
    kiln.load_plugin_library(plugin_path)
    with pytest.raises(kiln.UnsupportedError, match=r"node 'scaled' runs plugin kiln.test::ScaledAdd v2 "
                                                    r"\(libkiln_test_plugin.so\), which has no CUDA implementation "
                                                    r"\(its execute_cuda is NULL\), so the cuda backend cannot run it"):
        kiln.build_onnx(plugin_model(), target="cuda", cuda_arch=90,
                        profiles={"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 3), (2, 3), (2, 3))})


def test_missing_library_and_non_plugin_library(tmp_path, build_dir):
    with pytest.raises(kiln.NotFoundError, match="cannot load plugin library"):
        kiln.load_plugin_library(tmp_path / "libnothing.so")
    with pytest.raises(kiln.InvalidArgumentError, match="exports no kiln_plugin_init"):
        kiln.load_plugin_library(build_dir / "lib" / "libkiln.so")


def run_child(code, env, preload=""):
    env = dict(python_child_env(env))
    if preload:  # after the sanitizer runtime, when there is one
        env["LD_PRELOAD"] = " ".join(p for p in (env.get("LD_PRELOAD", ""), preload) if p)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          env=env)


def test_engine_loads_in_a_process_that_preloads_the_plugin(tmp_path, plugin_path, cli_engine):
    code = f"""
        import numpy as np, kiln
        engine = kiln.Engine({str(cli_engine / 'm.kiln')!r})
        a = np.ones((2, 3), np.float32); b = np.full((2, 3), 0.25, np.float32)
        out = engine.run({{"A": a, "B": b}})
        assert np.allclose(out["Y"], 1.5) and out["Z"].shape == (6,), out
        print("ok")
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("LD_PRELOAD", None)
    result = run_child(code, env, preload=plugin_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    # The same process without the plugin: the clear error, not a crash.
    missing = run_child(code.replace('print("ok")', ""), env)
    assert missing.returncode != 0
    assert "NotFoundError" in missing.stderr, missing.stderr
    assert "needs plugin kiln.test::ScaledAdd v2, provided at build time by libkiln_test_plugin.so" in missing.stderr


def test_torch_runtime_exposes_load_plugin_library(plugin_path):
    pytest.importorskip("torch")
    import kiln.runtime

    assert kiln.runtime.load_plugin_library(plugin_path) == plugin_path
    import torch

    if not kiln.runtime.is_loaded():
        try:
            kiln.runtime.load_library()
        except kiln.runtime.RuntimeLibraryNotFoundError:
            pytest.skip("libkiln_torch.so not built")
    # libkiln_torch.so shares libkiln_runtime.so, and so the registry, with this process.
    engine = kiln.runtime.engine_from_bytes(
        kiln.build_onnx(plugin_model(), profiles={"A": ((1, 3), (2, 3), (8, 3)), "B": ((1, 3), (2, 3), (8, 3))}))
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    y = kiln.runtime.execute(engine, [a, b])[0]
    np.testing.assert_allclose(y.numpy(), expected(a.numpy(), b.numpy())[0], rtol=1e-6, atol=1e-6)
