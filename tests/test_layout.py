"""The torch boundary is in the layout: edge/, cloud/ and models/ outside models/training/
never import torch or roadsense.models.training (checked on the source, and by importing
the edge agent and the cloud service with torch made unimportable)."""

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
