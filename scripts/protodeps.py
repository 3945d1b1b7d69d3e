"""Copy the googleapis .proto files our contracts import into .protodeps/.

buf has no include flag, so the protos shipped by the installed
googleapis-common-protos package are copied into a git-ignored folder that
buf.yaml lists as a second module.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import google.api.annotations_pb2
import google.rpc.status_pb2

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / ".protodeps"


def site_root() -> Path:
    """The folder that holds google/api/*.proto from googleapis-common-protos."""
    return Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent


def main() -> int:
    src = site_root()
    assert Path(google.rpc.status_pb2.__file__).resolve().parent.parent.parent == src
    if DEST.exists():
        shutil.rmtree(DEST)
    for sub in ("google/api", "google/rpc"):
        (DEST / sub).mkdir(parents=True)
        for proto in sorted((src / sub).glob("*.proto")):
            shutil.copy2(proto, DEST / sub / proto.name)
    print(f"copied googleapis protos from {src} to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
