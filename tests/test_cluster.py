"""`meshwright cluster up`, `keys init` and the gateway alone: the pieces of a
distributed deployment on one machine (the chaos suite in tests/chaos runs the
cluster under faults)."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from meshwright.cluster import Cluster, ClusterConfig, grpc_serving
from meshwright.mesh.auth import verifier_from_files
from tests.conftest import eventually
from tests.consul_double import ConsulDoubleProcess
from tests.e2e._proc import Running, cli_env, meshwright
from tests.support_auth import test_keys

# -- ClusterConfig ---------------------------------------------------------------------


def test_a_cluster_needs_consul_for_its_replicas(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be consul://host:8500, not 'memory://'"):
        ClusterConfig(directory=tmp_path, registry_url="memory://")
    ClusterConfig(directory=tmp_path, registry_url="consuls://c:8501")  # HTTPS is Consul too


def test_a_cluster_runs_at_least_one_replica_of_known_services(tmp_path: Path) -> None:
    consul = "consul://127.0.0.1:8500"
    ClusterConfig(directory=tmp_path, registry_url=consul, replicas={"workflow": 1})
    with pytest.raises(ValueError, match="workflow needs at least one replica, not 0"):
        ClusterConfig(directory=tmp_path, registry_url=consul, replicas={"workflow": 0})
    with pytest.raises(ValueError, match="unknown service 'gateway'"):
        ClusterConfig(directory=tmp_path, registry_url=consul, replicas={"gateway": 1})
    with pytest.raises(ValueError, match="agent ids must differ"):
        ClusterConfig(directory=tmp_path, registry_url=consul, agents=[("a", "m:x"), ("a", "m:y")])


def test_a_second_cluster_in_a_running_ones_directory_is_refused(tmp_path: Path) -> None:
    config = ClusterConfig(directory=tmp_path, registry_url="consul://127.0.0.1:1")
    (tmp_path / "cluster.json").write_text(json.dumps({"pid": os.getppid()}))
    with pytest.raises(RuntimeError, match=f"a cluster \\(pid {os.getppid()}\\) is already"):
        Cluster(config)._refuse_a_running_cluster()
    # A manifest left by a cluster that died is no obstacle.
    (tmp_path / "cluster.json").write_text(json.dumps({"pid": 2**22 + 12345}))
    Cluster(config)._refuse_a_running_cluster()


# -- keys init ---------------------------------------------------------------------------


async def test_keys_init_writes_a_key_pair_and_each_process_token(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    env = cli_env(tmp_path / "config")
    rc, out = await meshwright("keys", "init", "--dir", str(keys), "--agent", "a-1", env=env)
    assert rc == 0, out
    names = {
        "signing-key.pem",
        "signing-key.pub.pem",
        "admin.token",
        "client.token",
        "service.token",
        "agent-a-1.token",
    }
    assert {p.name for p in keys.iterdir()} == names
    assert {Path(line).name for line in out.split()} == names
    for p in keys.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    verifier = verifier_from_files(public_key=str(keys / "signing-key.pub.pem"))
    for file, principal in (
        ("admin.token", "admin:admin"),
        ("client.token", "client:dev"),
        ("service.token", "service:mesh"),
        ("agent-a-1.token", "agent:a-1"),
    ):
        assert verifier.verify((keys / file).read_text().strip()).name == principal

    # Again, with one more agent: what exists is kept byte for byte, the new one added.
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    rc, out = await meshwright(
        "keys", "init", "--dir", str(keys), "--agent", "a-1", "--agent", "a-2", env=env
    )
    assert rc == 0, out
    assert {n: (keys / n).read_bytes() for n in before} == before
    assert verifier.verify((keys / "agent-a-2.token").read_text().strip()).name == "agent:a-2"

    # A token file naming another subject is replaced (it is not this agent's).
    (keys / "agent-a-1.token").write_bytes((keys / "agent-a-2.token").read_bytes())
    rc, out = await meshwright("keys", "init", "--dir", str(keys), "--agent", "a-1", env=env)
    assert rc == 0, out
    assert verifier.verify((keys / "agent-a-1.token").read_text().strip()).name == "agent:a-1"


async def test_keys_init_mints_for_the_ttl_given_and_refuses_a_bad_agent_id(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    env = cli_env(tmp_path / "config")
    rc, out = await meshwright("keys", "init", "--dir", str(keys), "--ttl", "2d", env=env)
    assert rc == 0, out
    claims = jwt.decode(
        (keys / "service.token").read_text().strip(), options={"verify_signature": False}
    )
    assert claims["exp"] - claims["iat"] == 2 * 86_400
    rc, out = await meshwright(
        "keys", "init", "--dir", str(tmp_path / "other"), "--agent", "bad id", env=env
    )
    assert rc == 2 and "--agent 'bad id'" in out, out
    assert not (tmp_path / "other").exists()  # nothing written


# -- the gateway alone -------------------------------------------------------------------


async def test_the_gateway_alone_fronts_services_at_target_addresses(tmp_path: Path) -> None:
    keys = test_keys()
    env = cli_env(tmp_path, MESHWRIGHT_TOKEN=keys.token("service", "mesh"))
    public = ("--auth-public-key", str(keys.public_key_file))
    core = await Running.start("serve", "--grpc-port", "0", "--no-gateway", *public, env=env)
    gateway = None
    try:
        address = (await core.wait_for(r"serving registry, economy, workflow on (\S+)")).group(1)
        targets = [f"--{s}-target" for s in ("registry", "economy", "workflow")]
        gateway = await Running.start(
            "serve",
            "--services",
            "gateway",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            *public,
            *[arg for t in targets for arg in (t, address)],
            env=env,
        )
        url = (await gateway.wait_for(r"gateway on (http://\S+)")).group(1)
        assert "serving gateway on" in gateway.output
        headers = {"Authorization": f"Bearer {keys.token('client', 'alice')}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
            for path in ("/v1/workflows", "/v1/agents", "/v1/accounts"):
                reply = await http.get(path)
                assert reply.status_code == 200, (path, reply.text)
            # The caller's own token goes through: anonymous is refused by the services.
            assert (
                await http.get("/v1/workflows", headers={"Authorization": ""})
            ).status_code == 401
            # The mesh's skill router is fronted too: it answers that no agent offers it.
            reply = await http.post(
                "/v1/agent/tasks:execute", json={"skill": "no.such", "taskId": "t1", "input": {}}
            )
            assert reply.status_code == 404, reply.text
            assert reply.json()["details"][0]["reason"] == "SKILL_NOT_OFFERED", reply.text
    finally:  # both stopped before either exit code is judged
        gateway_code = await gateway.stop() if gateway is not None else 0
        core_code = await core.stop()
        assert gateway is None or gateway_code == 0, gateway.output
        assert core_code == 0, core.output


# -- the cluster -------------------------------------------------------------------------


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDoubleProcess]:
    double = ConsulDoubleProcess(args=("--first-check-at-once", "--min-check-interval-s", "0.2"))
    double.start()
    try:
        yield double
    finally:
        double.stop()


async def test_cluster_up_runs_the_demo_across_replicas_and_stops_everything(
    tmp_path: Path, consul: ConsulDoubleProcess
) -> None:
    directory = tmp_path / "cluster"
    rc, out = await meshwright(
        "cluster", "up", "--registry", consul.url, "--dir", str(directory), "--http-port", "0",
        "--agents", "2", "--demo", "--exit-after-demo",
        env=cli_env(tmp_path / "config"), timeout=180,
    )  # fmt: skip
    assert rc == 0, out
    assert "WORKFLOW_SUCCEEDED" in out and "ledger OK" in out, out
    for name in ("registry-1", "registry-2", "economy-1", "economy-2", "workflow-1", "workflow-2"):
        assert name in out, out
    # Each replica wrote its log; the manifest of a running cluster is gone once it stopped.
    logs = {p.name for p in (directory / "logs").iterdir()}
    assert {"redis.log", "gateway.log", "workflow-2.log", "agent-sysinfo-1.log"} <= logs
    assert not (directory / "cluster.json").exists()
    assert (directory / "redis" / "appendonlydir").is_dir()  # Redis kept an AOF


async def test_cluster_up_without_consul_says_what_it_needs(tmp_path: Path) -> None:
    rc, out = await meshwright("cluster", "up", "--dir", str(tmp_path), env=cli_env(tmp_path))
    assert rc == 2, out
    assert "needs a Consul" in out and "--registry consul://127.0.0.1:8500" in out, out
    assert "Traceback" not in out


async def test_a_cluster_restarts_what_dies_on_its_port_and_pauses_what_it_is_told(
    tmp_path: Path, consul: ConsulDoubleProcess
) -> None:
    config = ClusterConfig(
        directory=tmp_path / "c",
        registry_url=consul.url,
        replicas={"registry": 1, "economy": 1, "workflow": 1},
        agents=[("sysinfo-1", "meshwright.agent.samples:sysinfo_agent")],
        http_port=0,
    )
    async with Cluster(config) as cluster:
        manifest = json.loads((config.directory / "cluster.json").read_text())
        assert {p["name"] for p in manifest["processes"]} == {
            "redis", "registry-1", "economy-1", "workflow-1", "gateway", "sysinfo-1",
        }  # fmt: skip
        flows = cluster.members["workflow-1"]
        first_pid, address = flows.pid, flows.address
        cluster.kill("workflow-1")
        await eventually(lambda: flows.starts == 2 and flows.ready.is_set(), timeout=30)
        assert flows.pid != first_pid and flows.address == address
        assert await grpc_serving(address)
        assert flows.exits == [-signal.SIGKILL]

        cluster.pause("workflow-1")
        assert not await grpc_serving(address, timeout=0.5)
        cluster.resume("workflow-1")
        assert await grpc_serving(address)
        assert flows.starts == 2  # a paused process is not restarted

        await cluster.restart("registry-1")  # asked: at once, on the same port
        assert cluster.members["registry-1"].starts == 2
        pids = [m.pid for m in cluster.members.values()]
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
