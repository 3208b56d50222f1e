"""The boundaries are in the layout, checked on the source.

- torch: edge/, cloud/ and models/ outside models/training/ never import torch or
  roadsense.models.training (also by importing the edge agent and the cloud service with
  torch made unimportable);
- the edge and the cloud never import each other, models/ neither of them, production code
  never the command line, benchmarks or the dev harness (brokers, PostgreSQL clusters, RTSP
  cameras and the simulated fleet under harness/), which only tests, benchmarks and the demo
  use. Each boundary is shown failing on a deliberate violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("torch", "onnx", "roadsense.models.training")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _torch_free_sources() -> list[Path]:
    sources = [*(REPO / "edge").rglob("*.py"), *(REPO / "cloud").rglob("*.py")]
    sources += [p for p in (REPO / "models").rglob("*.py") if "training" not in p.parts]
    return sorted(sources)


@pytest.mark.parametrize("path", _torch_free_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_torch_free_code_does_not_import_training(path: Path) -> None:
    bad = sorted(
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert not bad, f"{path.relative_to(REPO)} imports {bad}; torch code lives in models/training/"


def test_every_torch_module_of_models_is_under_training() -> None:
    for path in (REPO / "models").rglob("*.py"):
        if "training" in path.parts:
            continue
        assert not {n for n in _imports(path) if n.split(".")[0] == "torch"}, path


def test_the_edge_and_the_cloud_start_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "import roadsense.edge.agent, roadsense.edge.backends.onnxruntime\n"
        "import roadsense.edge.backends.tensorrt, roadsense.cloud.app\n"
        "assert not any(m.startswith('roadsense.models.training') for m in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


# The boundaries between the top-level folders: (who, what it must never import, why).
PRODUCTION = ("core", "edge", "cloud", "proto", "models", "provisioning")
BOUNDARIES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("edge",), ("roadsense.cloud",), "the edge and the cloud speak through proto/ only"),
    (("cloud",), ("roadsense.edge",), "the edge and the cloud speak through proto/ only"),
    (("models",), ("roadsense.edge", "roadsense.cloud"), "models/ serves both; it uses neither"),
    (
        PRODUCTION,
        ("roadsense.cli", "roadsense.bench"),
        "the CLI and benchmarks sit on top",
    ),
    (
        (*PRODUCTION, "cli"),
        ("roadsense.harness",),
        "the dev harness is for tests, benchmarks and the demo",
    ),
)
HARNESS_USERS = ("cli/demo.py",)
"""Files outside tests/ and bench/ that may use the harness: the demo runs a throwaway broker."""


def boundary_violations(root: Path) -> list[str]:
    """Every import under ``root`` that crosses a boundary, as 'file imports name (why)'."""
    found = []
    for folders, forbidden, why in BOUNDARIES:
        for folder in folders:
            for path in sorted((root / folder).rglob("*.py")):
                relative = path.relative_to(root).as_posix()
                if relative in HARNESS_USERS and forbidden == ("roadsense.harness",):
                    continue
                for name in sorted(_imports(path)):
                    if any(name == f or name.startswith(f + ".") for f in forbidden):
                        found.append(f"{relative} imports {name} ({why})")
    return found


def test_no_import_crosses_a_boundary() -> None:
    assert boundary_violations(REPO) == []


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("edge/agent.py", "from roadsense.cloud.domain import Reading"),
        ("cloud/app.py", "import roadsense.edge.outbox"),
        ("models/card.py", "from roadsense.edge.backends import classifier"),
        ("models/card.py", "from roadsense.cloud.store.sqlite import SqliteStore"),
        ("provisioning/ca.py", "from roadsense.cli.output import print_figures"),
        ("core/files.py", "from roadsense.bench.edge import run_edge_bench"),
        ("cloud/api/rpc.py", "from roadsense.harness.broker import free_port"),
        ("cli/main.py", "from roadsense.harness.postgres import start_postgres"),
    ],
)
def test_each_boundary_catches_a_deliberate_violation(tmp_path: Path, file: str, line: str) -> None:
    target = tmp_path / file
    target.parent.mkdir(parents=True)
    target.write_text(f'"""A module that breaks the layout."""\n\n{line}\n', encoding="utf-8")
    (name,) = _imports(target)
    (violation,) = boundary_violations(tmp_path)
    assert violation.startswith(f"{file} imports {name} (")


def test_the_demo_alone_may_use_the_harness_outside_tests_and_bench(tmp_path: Path) -> None:
    target = tmp_path / "cli" / "demo.py"
    target.parent.mkdir(parents=True)
    target.write_text("from roadsense.harness.broker import start_mosquitto\n", encoding="utf-8")
    assert boundary_violations(tmp_path) == []
