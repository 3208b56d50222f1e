"""The distribution: every folder is a roadsense.* package, nothing generic at top level."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
TOP_LEVEL = ["core", "cli", "edge", "cloud", "proto", "models", "provisioning", "bench", "harness"]


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def _folders_that_are_packages() -> set[str]:
    """Dotted names of every folder holding Python modules or shipped files."""
    found = set()
    for top in TOP_LEVEL:
        root = REPO / top
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(f.is_file() for f in folder.iterdir()):
                continue
            relative = folder.relative_to(REPO).parts
            found.add(".".join(("roadsense", *relative)))
    return found


def test_every_folder_is_listed_in_pyproject() -> None:
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    listed = set(tool["setuptools"]["packages"])
    missing = _folders_that_are_packages() - listed
    assert not missing, f"folders missing from [tool.setuptools] packages: {sorted(missing)}"
    assert listed <= _folders_that_are_packages(), "pyproject lists a package with no folder"


def test_every_top_level_folder_maps_to_roadsense_namespace() -> None:
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    package_dir = tool["setuptools"]["package-dir"]
    for top in TOP_LEVEL:
        assert package_dir[f"roadsense.{top}"] == top


def test_installed_package_imports_as_roadsense_only(tmp_path: Path) -> None:
    code = (
        "import importlib.util, roadsense.edge, roadsense.cloud, roadsense.models;"
        "print([m for m in ('edge', 'cloud', 'models', 'proto', 'core', 'cli', 'bench', 'harness') "
        "if importlib.util.find_spec(m) is not None])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.integration
def test_wheel_in_fresh_venv_gives_working_cli(tmp_path: Path) -> None:
    """pip install of the built wheel: `roadsense --help` works, no top-level edge/cloud."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("roadsense-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True
    )
    help_text = subprocess.run(
        [str(env_dir / "bin" / "roadsense"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "edge" in help_text
    assert "cloud" in help_text
    assert "demo" in help_text
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = {p.name for p in site.iterdir()} & {*TOP_LEVEL, "roadsense", "tests"}
    assert ours == {"roadsense"}
    assert (site / "roadsense" / "edge" / "samples" / "highway_video03.avi").is_file()
    assert (site / "roadsense" / "models" / "artifacts" / "congestion-placeholder.onnx").is_file()
