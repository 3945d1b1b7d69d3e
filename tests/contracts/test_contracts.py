"""The contracts: buf lint clean, gen/ current, every RPC reachable over HTTP."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVICES = [
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    economy_pb2.DESCRIPTOR.services_by_name["EconomyService"],
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
]


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf")
    assert buf, "buf is a dev dependency (buf-bin)"
    subprocess.run([sys.executable, "scripts/protodeps.py"], cwd=ROOT, check=True)
    done = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_regenerating_gen_leaves_no_diff(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run([sys.executable, "scripts/gen.py", str(out)], cwd=ROOT, check=True)
    committed = sorted(
        p.relative_to(ROOT / "gen")
        for p in (ROOT / "gen").rglob("*.py*")
        if "__pycache__" not in p.parts
    )
    fresh = sorted(p.relative_to(out) for p in out.rglob("*.py*"))
    assert committed == fresh
    differ = [str(p) for p in fresh if not filecmp.cmp(out / p, ROOT / "gen" / p, shallow=False)]
    assert differ == []


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.full_name)
def test_every_rpc_has_an_http_rule_and_a_request_response_pair(service) -> None:  # type: ignore[no-untyped-def]
    for method in service.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        assert rule.WhichOneof("pattern"), f"{method.full_name} has no google.api.http rule"
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"


def test_money_is_never_a_float() -> None:
    from google.protobuf.descriptor import FieldDescriptor

    money = {
        "amount",
        "balance",
        "staked",
        "escrowed",
        "price",
        "budget",
        "spent",
        "cost",
        "captured",
        "released",
        "initial_balance",
        "quorum",
    }
    for module in (agent_pb2, registry_pb2, economy_pb2, workflow_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for field in message.fields:
                if field.name in money or field.name.endswith("_weight"):
                    assert field.type == FieldDescriptor.TYPE_INT64, field.full_name


def test_the_wheel_holds_only_the_meshwright_namespace(tmp_path: Path) -> None:
    """Agent authors install meshwright into their projects: no stray top-level packages."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("meshwright-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "meshwright",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    for needed in (
        "meshwright/py.typed",
        "meshwright/examples/system-report.json",
        "meshwright/workflow/v1/workflow_pb2.py",
        "meshwright/workflow/v1/workflow_pb2.pyi",
        "meshwright/agent/v1/agent_pb2_grpc.py",
        "meshwright/gateway/app.py",
        "meshwright/mesh/server.py",
    ):
        assert needed in names
