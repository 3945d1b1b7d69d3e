"""The contracts: buf lint clean, gen/ current, every RPC reachable over HTTP."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2

from meshwright.agent.v1 import agent_pb2, manager_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVICES = [
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    economy_pb2.DESCRIPTOR.services_by_name["EconomyService"],
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
    manager_pb2.DESCRIPTOR.services_by_name["AgentManagerService"],
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
        if method.client_streaming:
            # REST has no client streams: they are gRPC only.
            assert not rule.WhichOneof("pattern"), f"{method.full_name} cannot be bound"
            assert method.server_streaming, f"{method.full_name}: only bidi streams are served"
        else:
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


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.full_name)
def test_every_rpc_declares_an_access_policy(service) -> None:  # type: ignore[no-untyped-def]
    """A new RPC without a policy fails here (and cannot be served: policy_of refuses it)."""
    from meshwright.mesh.policy import policy_of

    for method in service.methods:
        policy = policy_of(method)
        assert policy.roles, f"{method.full_name}: a policy that lets nobody in"
        if service.name == "AgentService":
            assert policy_of(method, mesh=True).roles, f"{method.full_name}: no mesh_access"


def test_a_method_without_a_policy_cannot_be_served() -> None:
    from google.protobuf import descriptor_pb2, descriptor_pool

    from meshwright.mesh.policy import policy_of

    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="t.proto", package="t.v1", syntax="proto3")
    file.message_type.add(name="PingRequest")
    file.message_type.add(name="PingResponse")
    svc = file.service.add(name="PingService")
    svc.method.add(name="Ping", input_type=".t.v1.PingRequest", output_type=".t.v1.PingResponse")
    pool.Add(file)
    method = pool.FindServiceByName("t.v1.PingService").methods_by_name["Ping"]
    with pytest.raises(ValueError, match="declares no"):
        policy_of(method)


def test_every_error_reason_is_registered_once_and_documented_in_the_protos() -> None:
    """Reasons are one table (a duplicate fails at import); each one the servers can send
    appears in the contract's comments, so clients can rely on it."""
    import meshwright.gateway  # noqa: F401  (registers the gateway's reasons)
    import meshwright.node  # noqa: F401  (imports every domain)
    from meshwright.mesh.errors import MeshError

    text = "\n".join(p.read_text() for p in (ROOT / "protos").rglob("*.proto"))
    ours = {r for r, cls in MeshError.reasons().items() if cls.__module__.startswith("meshwright.")}
    missing = sorted(r for r in ours if r not in text)
    assert missing == []
