"""Copy the googleapis .proto files our contracts import into .protodeps/.

buf has no include flag, so the protos shipped by the installed
googleapis-common-protos package are copied into a git-ignored folder that
buf.yaml lists as a second module.
"""

from __future__ import annotations

import os
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
    # Files are replaced one by one, atomically and only when they differ, so
    # two runs at once (make gen beside make lint) never see a half-made folder.
    for sub in ("google/api", "google/rpc"):
        (DEST / sub).mkdir(parents=True, exist_ok=True)
        for proto in sorted((src / sub).glob("*.proto")):
            target = DEST / sub / proto.name
            data = proto.read_bytes()
            if target.exists() and target.read_bytes() == data:
                continue
            tmp = target.with_name(f".{target.name}.{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    print(f"copied googleapis protos from {src} to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
