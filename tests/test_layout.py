"""The package by stage: each stage imports only the stages below it, and inside the sweeping stage each layer
only the layers below it (the import-linter contracts in pyproject.toml); no module of the package is part of an
import cycle; benchmarks/ uses only public names of the library."""

from __future__ import annotations

import ast
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env={"PYTHONPATH": str(root)}, capture_output=True, text=True
    )


def test_the_stages_import_only_downward():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_no_module_is_part_of_an_import_cycle():
    """Every strongly connected component of the module graph has one module: imports inside functions and under
    TYPE_CHECKING count too (grimp, which import-linter builds its graph with, reads them all)."""
    import grimp

    graph = grimp.build_graph("glue_bench", exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    cycles = []
    for a, b in itertools.combinations(modules, 2):
        if graph.chain_exists(a, b) and graph.chain_exists(b, a):
            cycles.append(f"{a} <-> {b}: " + " -> ".join(graph.find_shortest_chain(a, b)))
    assert cycles == []


def test_a_cycle_inside_sweeping_is_refused_naming_it(tmp_path):
    shutil.copytree(ROOT / "glue_bench", tmp_path / "glue_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    schema = tmp_path / "glue_bench" / "sweeping" / "schema.py"
    schema.write_text(
        schema.read_text(encoding="utf-8") + "\n\ndef late():\n    from glue_bench.sweeping import trial  # noqa\n",
        encoding="utf-8",
    )
    result = _lint_imports(tmp_path)
    assert result.returncode == 1
    assert "glue_bench.sweeping.schema is not allowed to import glue_bench.sweeping.trial" in result.stdout


def test_an_upward_import_fails_naming_it(tmp_path):
    shutil.copytree(ROOT / "glue_bench", tmp_path / "glue_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    data = tmp_path / "glue_bench" / "inputs" / "data.py"
    data.write_text(
        data.read_text(encoding="utf-8") + "\nfrom glue_bench.reporting import cells  # noqa\n", encoding="utf-8"
    )
    result = _lint_imports(tmp_path)
    assert result.returncode == 1
    assert "glue_bench.inputs is not allowed to import glue_bench.reporting" in result.stdout
    assert "glue_bench.inputs.data -> glue_bench.reporting.cells" in result.stdout


def _library_imports(tree: ast.AST) -> list[ast.ImportFrom]:
    """Every `from glue_bench… import …` in a parsed file, those inside functions included."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("glue_bench")]


def test_benchmarks_use_only_public_names():
    private = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        library = {alias.asname or alias.name for node in _library_imports(tree) for alias in node.names}
        for node in _library_imports(tree):
            private += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in library
                and node.attr.startswith("_")
            ):
                private.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert private == []


def test_every_library_name_a_script_or_test_imports_exists():
    """A name moved between modules (as the layers moved dry_run from cost.py to plan.py) is found here, in the
    fast suite, not when a slow test or a user first runs the benchmark that imports it inside a function."""
    import importlib.util

    missing = []
    for path in sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").glob("*.py")]):
        for node in _library_imports(ast.parse(path.read_text(encoding="utf-8"))):
            module = importlib.import_module(node.module)
            for alias in node.names:
                submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
                if not hasattr(module, alias.name) and not submodule:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []
