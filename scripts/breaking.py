"""`buf breaking` of protos/ against an earlier commit.

The earlier tree is exported with `git archive` (no worktree left behind) and
given the same .protodeps/ so its googleapis imports resolve. The reference
is $BREAKING_AGAINST, else the previous commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)


def main() -> int:
    ref = os.environ.get("BREAKING_AGAINST", "HEAD~1")
    if git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        print(f"breaking: no commit {ref!r} to compare with; nothing to check")
        return 0
    if git("cat-file", "-e", f"{ref}:protos").returncode != 0:
        print(f"breaking: {ref} has no protos/; nothing to check")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive = git("archive", "--format=tar", ref, "protos", "buf.yaml")
        if archive.returncode != 0:
            print(archive.stderr.decode(), file=sys.stderr)
            return 1
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        shutil.copytree(ROOT / ".protodeps", Path(tmp) / ".protodeps")
        print(f"breaking: comparing protos/ with {ref}")
        return subprocess.call(["buf", "breaking", "--against", tmp], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
