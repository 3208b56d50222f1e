"""Regenerate the Python code for the wire contract in proto/v1.

    python proto/generate.py          # rewrite proto/v1/*_pb2*.py{,i}
    python proto/generate.py --check  # exit 1 when the committed code is stale

The .proto sources are staged under roadsense/proto/v1/ so that the generated
modules import each other as ``roadsense.proto.v1``, the installed package.
Needs the ``dev`` extra (grpcio-tools pinned to the version named in
pyproject.toml, and mypy-protobuf for the gRPC type stubs).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "v1"
PACKAGE_PATH = Path("roadsense", "proto", "v1")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto in proto/v1 into out_dir; return the generated files."""
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(tmp, "include")
        staged = include / PACKAGE_PATH
        staged.mkdir(parents=True)
        protos = sorted(SOURCE_DIR.glob("*.proto"))
        for proto in protos:
            shutil.copy(proto, staged / proto.name)
        build = Path(tmp, "build")
        build.mkdir()
        plugin = Path(sys.executable).with_name("protoc-gen-mypy_grpc")
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{include}",
            f"--python_out={build}",
            f"--pyi_out={build}",
            f"--grpc_python_out={build}",
            f"--plugin=protoc-gen-mypy_grpc={plugin}",
            f"--mypy_grpc_out={build}",
            *(str(PACKAGE_PATH / p.name) for p in protos),
        ]
        subprocess.run(cmd, check=True, cwd=include)
        written = []
        for path in sorted((build / PACKAGE_PATH).iterdir()):
            if path.name.endswith(GENERATED_SUFFIXES):
                target = out_dir / path.name
                shutil.copy(path, target)
                written.append(target)
        return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail when the committed code is stale"
    )
    args = parser.parse_args()
    if not args.check:
        for path in generate(SOURCE_DIR):
            print(f"wrote {path.relative_to(SOURCE_DIR.parent.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    committed = {
        p.name: p.read_bytes() for p in SOURCE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    }
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    if stale:
        print(
            "generated protobuf code is stale: " + ", ".join(stale) + "\n"
            "run: python proto/generate.py",
            file=sys.stderr,
        )
        return 1
    print("generated protobuf code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
