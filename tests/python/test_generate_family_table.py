"""cmake/generate_family_table.cmake, run on made-up sources: the table lists every family's
definition sorted by name, comments are free to mention the functions, and every way a family could
be left out of the table or listed twice is a build error naming the file and the function."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cmake" / "generate_family_table.cmake"


def cmake() -> str:
    beside_python = Path(sys.executable).parent / "cmake"  # the venv's, as `make` uses
    found = str(beside_python) if beside_python.exists() else shutil.which("cmake")
    if found is None:
        pytest.fail("cmake is not installed (make venv installs it)")
    return found


def generate(tmp_path: Path, sources: dict[str, str], **overrides: str) -> subprocess.CompletedProcess:
    paths = []
    for name, text in sources.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(str(path))
    (tmp_path / "sources.txt").write_text("\n".join(paths) + "\n")
    variables = {"SOURCES_FILE": str(tmp_path / "sources.txt"), "SOURCE_ROOT": str(tmp_path), "KIND": "ops",
                 "REGISTRY": "OpRegistry", "NAMESPACE": "kiln::ops", "INCLUDE": "ops/op_families.hpp",
                 "FAMILY_TYPE": "OpFamily", "TABLE": "op_families", "OUTPUT": str(tmp_path / "table.cpp")}
    variables.update(overrides)
    args = [cmake()] + [f"-D{key}={value}" for key, value in variables.items() if value is not None]
    return subprocess.run(args + ["-P", str(SCRIPT)], capture_output=True, text=True)


def test_lists_every_definition_sorted_with_its_file(tmp_path):
    out = generate(tmp_path, {
        "zeta.cpp": "namespace kiln::ops {\nvoid register_zeta_ops(OpRegistry& registry) {\n}\n}\n",
        "alpha.cpp": ("// register_alpha_ops( is called by the table, not here\n"
                      "/* nor is register_other_ops( */\n"
                      "void register_alpha_ops(\n    OpRegistry &r)\n{\n}\n"),
        "plain.cpp": "int unrelated() { return 0; }\n",
    })
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "table.cpp").read_text()
    assert "std::array<OpFamily, 2>" in table
    alpha = table.index('OpFamily{"alpha", "src/alpha.cpp", &register_alpha_ops}')
    zeta = table.index('OpFamily{"zeta", "src/zeta.cpp", &register_zeta_ops}')
    assert alpha < zeta
    assert "register_other_ops" not in table


def test_unchanged_table_is_not_rewritten(tmp_path):
    sources = {"a.cpp": "void register_a_ops(OpRegistry& registry) {}\n"}
    assert generate(tmp_path, sources).returncode == 0
    table = tmp_path / "table.cpp"
    stamp = table.stat().st_mtime_ns
    assert generate(tmp_path, sources).returncode == 0
    assert table.stat().st_mtime_ns == stamp, "an identical table was rewritten (a needless recompile)"


def test_a_family_defined_twice_names_both_files(tmp_path):
    out = generate(tmp_path, {"one.cpp": "void register_conv_ops(OpRegistry& registry) {}\n",
                              "two.cpp": "void register_conv_ops(OpRegistry& r) {}\n"})
    assert out.returncode != 0
    assert "register_conv_ops is defined in both src/one.cpp and src/two.cpp" in out.stderr
    assert not (tmp_path / "table.cpp").exists()


@pytest.mark.parametrize("text", [
    "void register_pool_ops(OpRegistry& registry);\n",          # a declaration
    "void f(OpRegistry& r) { register_pool_ops(r); }\n",        # a call
    "static void register_pool_ops(OpRegistry& r, int extra) {}\n",  # not the registration signature
])
def test_other_mentions_of_a_registration_function_are_errors(tmp_path, text):
    out = generate(tmp_path, {"pool.cpp": text})
    assert out.returncode != 0
    assert "src/pool.cpp mentions register_pool_ops other than in definitions" in out.stderr


def test_a_missing_variable_is_named(tmp_path):
    out = generate(tmp_path, {"a.cpp": ""}, REGISTRY=None)
    assert out.returncode != 0
    assert "REGISTRY is not set" in out.stderr
