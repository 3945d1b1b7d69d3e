"""Regenerate gen/ from protos/ with grpc_tools.protoc (pinned in pyproject).

Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py plus an empty __init__.py in
every generated leaf folder so setuptools can map each as a package.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protodeps import DEST as PROTODEPS  # noqa: E402
from protodeps import main as copy_protodeps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"


def generate(out: Path) -> int:
    """Generate every proto under protos/ into ``out`` (emptied first)."""
    copy_protodeps()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    wkt = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{PROTODEPS}",
        f"-I{wkt}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    rc = protoc.main(args)
    if rc != 0:
        print("protoc failed", file=sys.stderr)
        return rc
    for f in files:
        leaf = out / Path(f).parent
        (leaf / "__init__.py").write_text('"""Generated protobuf and gRPC modules."""\n')
    print(f"generated {len(files)} files into {out}")
    return 0


def main() -> int:
    return generate(Path(sys.argv[1]) if len(sys.argv) > 1 else GEN)


if __name__ == "__main__":
    sys.exit(main())
