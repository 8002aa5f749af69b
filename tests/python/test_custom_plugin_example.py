"""examples/custom_plugin end to end, and kiln.compile's mapping of torch custom ops to plugins
(python/kiln/_plugin_ops.py): kiln is installed (cmake --install, components runtime and torch)
into a temporary prefix, the example plugin is built there with CMake against the installed
headers (find_package(kiln)), the small model calling mylib::scaled_gelu is compiled with the
plugin loaded and deployed with LD_PRELOAD and with dlopen, matching eager PyTorch. Without the
plugin the op falls back (named in the report); a plugin whose fields do not fit the op's arguments
is an error naming the op and the argument. Each case runs in a child process: a plugin library
stays loaded for its process's life, and a torch op can be defined once per process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiln_testing import python_child_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "custom_plugin"


def _cmake() -> str | None:
    beside_python = Path(sys.executable).parent / "cmake"
    return str(beside_python) if beside_python.is_file() else shutil.which("cmake")


@pytest.fixture(scope="module")
def installed(tmp_path_factory, build_dir):
    """(prefix, plugin path): kiln installed into a prefix and the example plugin built against it."""
    cmake = _cmake()
    if cmake is None or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("cmake or a C++ compiler is missing")
    if not (build_dir / "lib" / "libkiln_torch.so").is_file():
        pytest.skip("libkiln_torch.so is not built (KILN_WITH_TORCH)")
    work = tmp_path_factory.mktemp("custom_plugin")
    prefix = work / "prefix"
    for component in ("runtime", "torch"):
        subprocess.run([cmake, "--install", str(build_dir), "--prefix", str(prefix),
                        "--component", component], check=True, capture_output=True, timeout=120)
    for header in ("kiln.h", "plugin.h", "plugin.hpp"):
        assert (prefix / "include" / "kiln" / header).is_file()
    assert (prefix / "lib" / "cmake" / "kiln" / "kilnConfig.cmake").is_file()
    assert not (prefix / "lib" / "libkiln.so").exists()  # the builder is another component
    build = work / "build"
    configure = [cmake, "-S", str(EXAMPLE), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}",
                 "-DCMAKE_BUILD_TYPE=Release"]
    ninja = Path(sys.executable).parent / "ninja"
    if ninja.is_file():
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    for command in (configure, [cmake, "--build", str(build)]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    plugin = build / "libscaled_gelu_plugin.so"
    assert plugin.is_file()
    return prefix, plugin


def _run(args, env=None, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=python_child_env(env or dict(os.environ)))


def test_example_compiles_and_deploys_with_ld_preload_and_dlopen(installed, tmp_path):
    prefix, plugin = installed
    result = _run([EXAMPLE / "run_example.py", "all", "--plugin", plugin, "--kiln-lib",
                   prefix / "lib", "--work", tmp_path])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "0 node(s) left to PyTorch" in out and "mylib.scaled_gelu.default" in out
    assert "deployed (LD_PRELOAD): max abs difference to eager" in out
    assert f"deployed (dlopen of {plugin}): max abs difference to eager" in out
    assert (tmp_path / "model.pt2").is_file()

    # The same deployment without the plugin: the engine names what is missing.
    result = _run([EXAMPLE / "run_example.py", "deploy", "--kiln-lib", prefix / "lib", "--work",
                   tmp_path])
    assert result.returncode != 0
    assert "engine needs plugin mylib::scaled_gelu v1" in result.stderr
    assert "libscaled_gelu_plugin.so" in result.stderr


def _child(code: str, tmp_path: Path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "python"), str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    return _run([script], env=env)


def test_without_the_plugin_the_custom_op_falls_back(tmp_path):
    result = _child("""
        import torch, kiln
        from scaled_gelu_op import SmallModel, example_inputs
        model, inputs = SmallModel().eval(), example_inputs()
        compiled = kiln.compile(model, inputs)
        report = compiled.kiln_report
        [fallback] = report.fallbacks
        print("FALLBACK", fallback.op, "|", fallback.reason)
        assert len(report.engines) == 2, report
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
        try:
            kiln.compile(model, inputs, require_full_compilation=True)
        except kiln.FullCompilationError as error:
            print("FULL", error)
        """, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("FALLBACK mylib.scaled_gelu.default | mylib.scaled_gelu.default is a custom op and no "
            "plugin registers mylib::scaled_gelu (load one with kiln.load_plugin_library"
            in result.stdout)
    assert "FULL kiln.compile(require_full_compilation=True): 1 node(s)" in result.stdout


def test_plugin_fields_that_do_not_fit_the_op_name_the_argument(installed, tmp_path):
    _, plugin = installed
    # The op's float argument is called `scale`; the plugin's field is `alpha`.
    result = _child(f"""
        import torch, kiln

        @torch.library.custom_op("mylib::scaled_gelu", mutates_args=())
        def scaled_gelu(x: torch.Tensor, scale: float) -> torch.Tensor:
            return scale * torch.nn.functional.gelu(x)

        @scaled_gelu.register_fake
        def _(x, scale):
            return torch.empty_like(x)

        class M(torch.nn.Module):
            def forward(self, x):
                return scaled_gelu(x + 1, 2.0)

        kiln.load_plugin_library({str(plugin)!r})
        print("DESCRIBE", kiln.describe_plugin("mylib", "scaled_gelu"),
              kiln.describe_plugin("mylib", "scaled_gelu", 2))
        try:
            kiln.compile(M(), (torch.randn(2, 3),))
        except kiln.PluginFieldError as error:
            assert isinstance(error, kiln.InvalidArgumentError)
            print("ERROR", type(error).__name__, error)
        """, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("ERROR PluginFieldError kiln.compile: node 'scaled_gelu' calls torch op "
            "mylib::scaled_gelu, which maps to plugin mylib::scaled_gelu v1 "
            "(libscaled_gelu_plugin.so), but its argument 'scale' (float) is not a field of the "
            "plugin, which takes: alpha (float, required)") in result.stdout
    assert ("DESCRIBE {'data_dependent_shapes': False, 'fields': [{'kind': 'float', 'name': "
            "'alpha', 'required': True}], 'library': 'libscaled_gelu_plugin.so', 'name': "
            "'scaled_gelu', 'namespace': 'mylib', 'version': 1} None") in result.stdout


def test_torchvision_ops_map_to_kiln_plugin_names(tmp_path):
    # torchvision does not import beside the CPU torch here: its nms and roi_align are defined
    # under the torchvision namespace with their schemas. No kiln plugin library is loaded, so
    # they fall back, and the report names the plugin that would run each.
    result = _child("""
        import torch, kiln
        from kiln._plugin_ops import TORCHVISION_PLUGINS

        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                   "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")

        @torch.library.impl(lib, "roi_align", "CPU")
        def roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                      aligned):
            return input.new_zeros(rois.shape[0], input.shape[1], pooled_height, pooled_width)

        @torch.library.register_fake("torchvision::roi_align", lib=lib)
        def _(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
            return input.new_empty(rois.shape[0], input.shape[1], pooled_height, pooled_width)

        class M(torch.nn.Module):
            def forward(self, x, rois):
                return torch.ops.torchvision.roi_align(x * 2, rois, 0.5, 2, 2, 0, True) + 1

        compiled = kiln.compile(M(), (torch.randn(1, 3, 8, 8), torch.rand(4, 5)))
        for fallback in compiled.kiln_report.fallbacks:
            print("FALLBACK", fallback.op, "|", fallback.reason)
        print("TABLE", sorted(TORCHVISION_PLUGINS.items()))
        """, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("FALLBACK torchvision.roi_align.default | torchvision.roi_align.default is a custom op "
            "and no plugin registers kiln::TorchvisionRoiAlign") in result.stdout
    assert ("TABLE [('kiln_plugins::batched_nms', ('kiln', 'BatchedNMS')), "
            "('torchvision::deform_conv2d', ('kiln', 'TorchvisionDeformConv2d')), ('torchvision::nms', "
            "('kiln', 'TorchvisionNms')), ('torchvision::roi_align', ('kiln', 'TorchvisionRoiAlign'))]"
            in result.stdout)
