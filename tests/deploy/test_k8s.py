"""deploy/k8s: every manifest fits its API's shape (k8s_schema, no cluster needed), and the
scaling is what the issue asks: a Deployment apart for the `llm` queue, a KEDA ScaledObject
per queue on its true backlog, and scale-in that gives running steps their grace."""

from __future__ import annotations

import re

import pytest

from tests.deploy.catalog import ROOT, load_yaml_all, reads, unknown_reads
from tests.deploy.k8s_schema import KINDS, Deployment, ScaledObject, TriggerAuthentication

K8S = ROOT / "deploy/k8s"
SOFT_SHUTDOWN_S = 10
HARD_LIMIT_GRACE_S = 30


def manifests() -> list[tuple[str, dict]]:
    return [(f"{p.name}:{d['kind']}/{d['metadata']['name']}", d)
            for p in sorted(K8S.glob("*.yaml")) for d in load_yaml_all(str(p.relative_to(ROOT)))]


def objects(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize(("where", "doc"), manifests(), ids=[w for w, _ in manifests()])
def test_manifest_fits_its_api_schema(where, doc):
    KINDS[doc["kind"]].model_validate(doc)


def test_the_schema_check_catches_what_kubectl_would():
    """A misspelt field, a missing required one, a number where KEDA wants a string."""
    from pydantic import ValidationError

    deployment = objects("Deployment")["chordal-worker"]
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(ValidationError, match="replica"):
        Deployment.model_validate(typo)
    spec = dict(deployment["spec"]["template"]["spec"])
    spec["terminationGracePeriodSecond"] = 60
    bad = {**deployment, "spec": {**deployment["spec"],
                                  "template": {**deployment["spec"]["template"], "spec": spec}}}
    with pytest.raises(ValidationError, match="terminationGracePeriodSecond"):
        Deployment.model_validate(bad)
    scaled = objects("ScaledObject")["chordal-worker"]
    trigger = {**scaled["spec"]["triggers"][0]}
    trigger["metadata"] = {**trigger["metadata"], "threshold": 4}
    with pytest.raises(ValidationError, match="threshold"):
        ScaledObject.model_validate({**scaled, "spec": {**scaled["spec"], "triggers": [trigger]}})
    no_target = {**scaled, "spec": {k: v for k, v in scaled["spec"].items()
                                    if k != "scaleTargetRef"}}
    with pytest.raises(ValidationError, match="scaleTargetRef"):
        ScaledObject.model_validate(no_target)


def test_llm_calls_scale_apart_from_tools():
    deployments = objects("Deployment")
    tools = deployments["chordal-worker"]["spec"]["template"]["spec"]["containers"][0]["args"]
    llm = deployments["chordal-worker-llm"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert flag(llm, "--queues") == "llm"
    assert "llm" not in flag(tools, "--queues").split(",")
    assert "chordal" in flag(tools, "--queues").split(",")
    assert flag(llm, "--pool") == "threads"  # model calls wait on the network


@pytest.mark.parametrize("name", ["chordal-worker", "chordal-worker-llm"])
def test_workers_shut_down_gracefully_and_run_safely(name):
    from planner.settings import Settings
    from workers.app import make_app

    assert make_app(Settings.from_env({})).conf.worker_soft_shutdown_timeout == SOFT_SHUTDOWN_S
    assert Settings.from_env({}).worker.hard_limit_grace_s == HARD_LIMIT_GRACE_S
    deployment = objects("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > SOFT_SHUTDOWN_S + HARD_LIMIT_GRACE_S
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CHORDAL_REDIS_URL"]["valueFrom"]
    assert "value" not in env.get("ANTHROPIC_API_KEY", {})
    # Metrics on a named port, the one the PodMonitor scrapes.
    port = int(env["CHORDAL_METRICS_PORT"]["value"])
    assert {"containerPort": port, "name": "metrics"} in container["ports"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_every_worker_deployment_has_a_scaled_object_on_its_queues_backlog():
    deployments = objects("Deployment")
    scaled = objects("ScaledObject")
    workers = {n for n, d in deployments.items()
               if d["spec"]["template"]["spec"]["containers"][0].get("args", [""])[0] == "worker"}
    assert workers == {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()}
    for so in scaled.values():
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        args = target["spec"]["template"]["spec"]["containers"][0]["args"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        meta = trigger["metadata"]
        query = meta["query"]
        # The backlog of exactly the queues this Deployment consumes, from chordal_queue_depth
        # (which counts prefetched messages and countdown retries; a list length would not).
        queues = set(re.findall(r'chordal_queue_depth\{queue="([^"]+)"\}', query))
        assert queues == set(flag(args, "--queues").split(","))
        assert re.search(r"max\(chordal_queue_depth", query), "every worker reports it: max"
        assert unknown_reads(query) == []
        assert reads(query).metrics == {"chordal_queue_depth",
                                        "flower_worker_number_of_currently_executing_tasks"}
        # One pod per --concurrency of work.
        assert meta["threshold"] == flag(args, "--concurrency")
        # No answer from Prometheus is a failure (fallback replicas), never a zero.
        assert meta["ignoreNullValues"] == "false"
        assert so["spec"]["fallback"]["replicas"] >= 1
        assert so["spec"]["minReplicaCount"] >= 1  # a reconciler always runs
        down = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
        assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])
        # Credentials for Prometheus from a Secret.
        auth = objects("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
        TriggerAuthentication.model_validate(auth)
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username",
                                                                            "password"}


def node_name(deployment: dict, pod: str) -> str:
    """The Celery node name of a pod of this Deployment: its --hostname with %h the pod's
    hostname, which in Kubernetes is the pod's name."""
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return flag(args, "--hostname").replace("%h", pod)


def test_running_steps_are_counted_per_deployment_by_pod_name():
    """Flower labels a worker by its node name, chordal@<pod name> here, and a pod's name is
    <deployment>-<replicaset hash>-<suffix>: each query's regex must take its own
    Deployment's pods and not the other's (PromQL regexes are anchored)."""
    deployments = objects("Deployment")
    pods = {"chordal-worker": "chordal-worker-7d9f8b6c5d-x2k4q",
            "chordal-worker-llm": "chordal-worker-llm-5c6b7d8f9-abcde"}
    nodes = {name: node_name(deployments[name], pod) for name, pod in pods.items()}
    assert nodes["chordal-worker"] == "chordal@chordal-worker-7d9f8b6c5d-x2k4q"
    for so in objects("ScaledObject").values():
        mine = so["spec"]["scaleTargetRef"]["name"]
        (regex,) = re.findall(r'worker=~"([^"]+)"', so["spec"]["triggers"][0]["metadata"]["query"])
        for deployment, node in nodes.items():
            assert bool(re.fullmatch(regex, node)) == (deployment == mine), (regex, node)


@pytest.mark.parametrize("name", ["chordal-worker", "chordal-worker-llm"])
def test_liveness_probe_pings_the_pods_own_node_name(name):
    deployment = objects("Deployment")[name]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]["exec"]["command"][-1]
    target = flag(probe.split(), "-d")
    # sh expands $HOSTNAME to the pod's name, as Celery expands %h.
    assert target.replace("$HOSTNAME", "POD") == node_name(deployment, "POD")


def test_keda_manifest_says_why():
    text = (K8S / "keda.yaml").read_text()
    for why in ("priority", "prefetched", "countdown", "worker_soft_shutdown_timeout",
                "terminationGracePeriodSeconds", "lease"):
        assert why in text, why


def test_pod_monitors_scrape_the_worker_and_flower_ports():
    deployments = objects("Deployment")
    monitors = objects("PodMonitor")
    ports = {n: {p["name"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]}
             for n, d in deployments.items()}
    jobs = set()
    for monitor in monitors.values():
        spec = monitor["spec"]
        labels_match = []
        for name, d in deployments.items():
            labels = d["spec"]["template"]["metadata"]["labels"]
            ok = spec["selector"].get("matchLabels", {}).items() <= labels.items() and all(
                labels.get(e["key"]) in e["values"]
                for e in spec["selector"].get("matchExpressions", []))
            if ok:
                labels_match.append(name)
        assert labels_match, monitor["metadata"]["name"]
        for endpoint in spec["podMetricsEndpoints"]:
            assert all(endpoint["port"] in ports[n] for n in labels_match)
            jobs |= {r["replacement"] for r in endpoint["relabelings"]
                     if r.get("targetLabel") == "job"}
    assert jobs == {"chordal-worker", "flower"}  # the job names the alerts watch


def test_no_secret_values_in_manifests():
    """Credentials come from the `chordal` Secret, which these files never define."""
    assert not objects("Secret")
    for _, doc in manifests():
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|_URL|AUTH", env["name"]):
                    assert "secretKeyRef" in env["valueFrom"], env["name"]
