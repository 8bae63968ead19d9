"""The deployment: the Helm chart (deploy/helm/lomas-server), the Zero to JupyterHub values
(deploy/helm/jupyterhub-values.yaml) and the image (deploy/Containerfile) agree with each other
and with the server; real helm renders the chart, and the chart's configuration starts a real
server that answers its probes."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.servers import free_port

pytestmark = pytest.mark.helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "lomas-server"
HUB_VALUES = ROOT / "deploy" / "helm" / "jupyterhub-values.yaml"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
RELEASE, NAMESPACE = "lomas-server", "jhub"
HEALTH = "lomas/api/v1/health"

# Secret values given to the chart: none may appear anywhere but in a Secret.
STORE_PASSWORD = "Store-Password-9f2c"
MONGO_PASSWORD = "MongoRootPassword7e1d"
HUB_TOKEN = "hub-service-token-0b5a"
S3_SECRET = "s3-secret-key-44c8"
S3_KEY_ID = "s3-key-id-19aa"
SECRETS = (STORE_PASSWORD, MONGO_PASSWORD, HUB_TOKEN, S3_SECRET, S3_KEY_ID)

VALUE_SETS: dict[str, dict[str, Any]] = {
    "sqlite": {},
    "sqlite-credentials": {
        "datasetCredentials": {
            "values": {
                "LOMAS_S3_ACCESS_KEY_ID": S3_KEY_ID,
                "LOMAS_S3_SECRET_ACCESS_KEY": S3_SECRET,
            }
        },
        "serverAppConfig": {"base_url": "/dp/"},
        "config": {"max_query_epsilon": 3},
    },
    "bundled-mongodb": {"store": {"type": "mongodb"}, "mongodb": {"auth": {}}},
    "bundled-mongodb-password": {
        "store": {"type": "mongodb"},
        "mongodb": {"auth": {"rootPassword": MONGO_PASSWORD}},
    },
    "external-mongodb": {
        "store": {
            "type": "external",
            "external": {"url": f"mongodb://lomas:{STORE_PASSWORD}@db.example:27017/lomas"},
        }
    },
    "external-mongodb-existing-secret": {
        "store": {
            "type": "external",
            "external": {"existingSecret": "lomas-store", "existingSecretKey": "url"},
        },
        "datasetCredentials": {"existingSecret": "lomas-dataset-credentials"},
        "replicaCount": 2,
    },
    "hub": {"identity": "hub"},
    "hub-token-value": {
        "identity": "hub",
        "hub": {"apiToken": {"value": HUB_TOKEN}, "analystGroups": ["analysts"]},
        "datasetCredentials": {"values": {"LOMAS_S3_SECRET_ACCESS_KEY": S3_SECRET}},
    },
}
HUB_SETS = {name for name, values in VALUE_SETS.items() if values.get("identity") == "hub"}


def helm() -> str:
    binary = Path(sys.executable).with_name("helm")
    if not binary.is_file():
        raise RuntimeError("helm is not built: run scripts/build-helm")
    return str(binary)


def run_helm(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # helm keeps its own files (repositories, cache) under HOME: a clean one per test.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "helm-home")}
    return subprocess.run(
        [helm(), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def render(values: dict[str, Any], tmp_path: Path, chart: Path = CHART) -> list[dict[str, Any]]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = run_helm(
        "template", RELEASE, str(chart), "-n", NAMESPACE, "-f", str(values_file), tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "lomas-server"]
    return container


def config_file(docs: list[dict[str, Any]]) -> dict[str, Any]:
    data = one(docs, "ConfigMap", RELEASE)["data"]
    return json.loads(data["jupyter_lomas_server_config.json"])


def base_url(docs: list[dict[str, Any]]) -> str:
    return config_file(docs).get("ServerApp", {}).get("base_url", "/")


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A port by number or by the container's name for it."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def image_command() -> list[str]:
    """The Containerfile's CMD (the exec form, a JSON list)."""
    (line,) = [ln for ln in CONTAINERFILE.read_text().splitlines() if ln.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


def image_port() -> int:
    command = image_command()
    (port,) = [int(arg.split("=", 1)[1]) for arg in command if arg.startswith("--port=")]
    return port


def test_helm_lint_passes_for_every_value_set(tmp_path):
    for name, values in VALUE_SETS.items():
        values_file = tmp_path / f"{name}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        done = run_helm("lint", "--strict", str(CHART), "-f", str(values_file), tmp_path=tmp_path)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_secrets_live_only_in_secrets(tmp_path, name):
    docs = render(VALUE_SETS[name], tmp_path)
    secret_values = set(SECRETS)
    for doc in docs:
        if doc["kind"] == "Secret":
            secret_values |= {base64.b64decode(v).decode() for v in doc.get("data", {}).values()}
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for value in secret_values:
            assert value not in text, f"{name}: a secret value in {doc['kind']}"
    # The configuration file never carries a store URL (it may hold a password).
    assert "store_url" not in config_file(docs).get("LomasServerApp", {})
    assert "mongodb://" not in json.dumps(one(docs, "ConfigMap", RELEASE))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_secret_reference_is_rendered_or_named_by_the_values(tmp_path, name):
    values = VALUE_SETS[name]
    docs = render(values, tmp_path)
    rendered = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "Secret"}
    given = {
        values.get("store", {}).get("external", {}).get("existingSecret"),
        values.get("datasetCredentials", {}).get("existingSecret"),
        # Zero to JupyterHub's Secret, where it keeps the service's generated token.
        "hub" if name in HUB_SETS and not values.get("hub", {}).get("apiToken") else None,
    } - {None}
    container = server_container(docs)
    references = [
        (e["name"], e["valueFrom"]["secretKeyRef"])
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    for variable, ref in references:
        if ref["name"] in given:
            continue
        assert ref["name"] in rendered, f"{variable}: no Secret {ref['name']}"
        assert ref["key"] in rendered[ref["name"]], f"{variable}: no key {ref['key']}"
    for source in container.get("envFrom", []):
        secret = source["secretRef"]["name"]
        assert secret in given or secret in rendered
    env = {e["name"]: e for e in container["env"]}
    assert "LOMAS_STORE_URL" in env
    store_type = values.get("store", {}).get("type", "sqlite")
    if store_type == "external":
        assert "secretKeyRef" in env["LOMAS_STORE_URL"]["valueFrom"]
    if store_type == "mongodb":
        # The password comes from the Secret; the URL names it through Kubernetes' $(VAR).
        assert "$(LOMAS_MONGODB_PASSWORD)@" in env["LOMAS_STORE_URL"]["value"]
        assert "secretKeyRef" in env["LOMAS_MONGODB_PASSWORD"]["valueFrom"]
        statefulset = one(docs, "StatefulSet")
        assert statefulset["spec"]["volumeClaimTemplates"]
        mongo = statefulset["spec"]["template"]["spec"]["containers"][0]
        assert (
            mongo["env"][1]["valueFrom"]["secretKeyRef"]["name"]
            == (env["LOMAS_MONGODB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"])
        )
        mongo_service = one(docs, "Service", f"{RELEASE}-mongodb")
        assert f"@{mongo_service['metadata']['name']}:27017/" in env["LOMAS_STORE_URL"]["value"]
    else:
        assert not [d for d in docs if d["kind"] == "StatefulSet"]
    if name in HUB_SETS:
        assert env["JUPYTERHUB_API_URL"]["value"].endswith("/hub/api")
        assert "secretKeyRef" in env["JUPYTERHUB_API_TOKEN"]["valueFrom"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_probes_ports_and_config_mount_agree(tmp_path, name):
    docs = render(VALUE_SETS[name], tmp_path)
    container = server_container(docs)
    base = base_url(docs)
    if name in HUB_SETS:
        assert base == "/services/lomas/"
        assert config_file(docs)["LomasServerApp"]["identity"] == "hub"
        assert config_file(docs)["HubIdentityProvider"]["admin_groups"] == ["lomas-admins"]
    (port,) = container["ports"]
    assert port["containerPort"] == image_port()
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == base + HEALTH
        assert container_port(container, get["port"]) == image_port()
    service = one(docs, "Service", RELEASE)
    (service_port,) = service["spec"]["ports"]
    assert container_port(container, service_port["targetPort"]) == image_port()
    pod = one(docs, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # The image's command runs: the chart sets neither command nor args.
    assert "command" not in container and "args" not in container
    # Non-root, and the configuration file where the server reads it.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert env["JUPYTER_CONFIG_PATH"] == mounts["config"]
    assert volumes["config"]["configMap"]["name"] == RELEASE
    if VALUE_SETS[name].get("store", {}).get("type", "sqlite") == "sqlite":
        store_path = env["LOMAS_STORE_URL"].removeprefix("sqlite:///")
        assert Path(store_path).parent == Path(mounts["data"])
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-data"
        assert one(docs, "PersistentVolumeClaim", f"{RELEASE}-data")
        assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"config": {"store_url": "mongodb://u:p@h/db"}}, "config.store_url"),
        ({"store": {"type": "sqlite"}, "replicaCount": 2}, "replicaCount must be 1"),
        ({"store": {"type": "external"}}, "store.external.url"),
        ({"identity": "ldap"}, "identity"),
        ({"identity": "hub", "hub": {"apiToken": {"existingSecret": ""}}}, "hub.apiToken"),
    ],
)
def test_unsafe_or_broken_values_are_refused(tmp_path, values, mentions):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = run_helm("template", RELEASE, str(CHART), "-f", str(values_file), tmp_path=tmp_path)
    assert done.returncode != 0
    assert mentions in done.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_notes_render(tmp_path, name):
    # helm template leaves NOTES.txt out: render it through a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "NOTES.source")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'notes: {{ tpl (.Files.Get "NOTES.source") . | toJson }}\n'
    )
    docs = render(VALUE_SETS[name], tmp_path, chart)
    (notes,) = [d["notes"] for d in docs if "notes" in d]
    assert base_url(docs) + "lomas/api/v1" in notes
    assert "lomas-admin export" in notes
    for value in SECRETS:
        assert value not in notes


def test_jupyterhub_values_register_the_chart_as_the_lomas_service(tmp_path):
    docs = render(VALUE_SETS["hub"], tmp_path)
    hub_values = yaml.safe_load(HUB_VALUES.read_text())
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    name = chart_values["hub"]["serviceName"]
    service = one(docs, "Service", RELEASE)
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"

    registered = hub_values["hub"]["services"][name]
    assert registered["url"] == url
    # The server serves under the prefix the Hub gives the service.
    assert base_url(docs) == f"/services/{name}/"
    # Kernels reach the service itself under that prefix.
    assert hub_values["singleuser"]["extraEnv"]["LOMAS_URL"] == url + base_url(docs)
    # No token in the values: Zero to JupyterHub generates it into its Secret "hub", where
    # the chart reads it by default.
    assert "apiToken" not in registered and "api_token" not in registered
    token = {e["name"]: e for e in server_container(docs)["env"]}["JUPYTERHUB_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "hub",
        "key": f"hub.services.{name}.apiToken",
    }

    role = hub_values["hub"]["loadRoles"]["lomas-service"]
    assert set(role["scopes"]) == {"read:users:groups", "read:roles:users"}
    assert role["services"] == [name]
    groups = hub_values["hub"]["config"]["JupyterHub"]["load_groups"]
    assert set(config_file(docs)["HubIdentityProvider"]["admin_groups"]) <= set(groups)
    # The scope the service requires of every token: held by its admins, carried by kernels.
    access = f"access:services!service={name}"
    assert hub_values["hub"]["loadRoles"]["user"]["scopes"] == ["self", access]
    assert access in hub_values["hub"]["config"]["Spawner"]["server_token_scopes"]

    # Single-user pods may reach the server's pods on its port; the server may reach the Hub.
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["hub.jupyter.org/network-access-hub"] == "true"
    (rule,) = hub_values["singleuser"]["networkPolicy"]["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for p in rule["ports"]] == [image_port()]


def test_image_runs_the_server_as_a_non_root_user():
    text = CONTAINERFILE.read_text()
    assert image_command() == ["lomas-server", "--ip=0.0.0.0", "--port=8080"]
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^USER 1000(:1000)?$", text, re.M)
    assert re.search(r'pip install "\$\(ls /tmp/dist/lomas_jupyter-\*\.whl\)\[hub\]"', text)
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_values["podSecurityContext"]["runAsUser"] == 1000


def _start_as_the_chart_says(
    docs: list[dict[str, Any]], tmp_path: Path
) -> tuple[subprocess.Popen[bytes], str, dict[str, str], Path]:
    """Run the image's command with the chart's configuration file and environment, each of
    the pod's mounts mapped to a folder under tmp_path: (process, URL, environment, log)."""
    container = server_container(docs)
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    for folder in mounts.values():
        folder.mkdir()

    # One pass, longest mount first: a folder put in is never rewritten again.
    pattern = re.compile("|".join(map(re.escape, sorted(mounts, key=len, reverse=True))))

    def local(value: str) -> str:
        return pattern.sub(lambda match: str(mounts[match.group(0)]), value)

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = local(entry["value"])
        elif entry["name"] == "JUPYTERHUB_API_TOKEN":
            env[entry["name"]] = "test-service-token"  # from z2jh's Secret in a cluster
    for file_name, text in one(docs, "ConfigMap", RELEASE)["data"].items():
        (Path(env["JUPYTER_CONFIG_PATH"]) / file_name).write_text(text)

    port = free_port()
    command = image_command()
    assert command[0] == "lomas-server"
    command[0] = str(Path(sys.executable).with_name("lomas-server"))
    # On loopback and a free port instead of 0.0.0.0:8080; nothing else changes.
    command = [
        "--ip=127.0.0.1"
        if arg == "--ip=0.0.0.0"
        else f"--port={port}"
        if arg.startswith("--port=")
        else arg
        for arg in command
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # the image runs as uid 1000; CI runs tests as root
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env
        )
    return process, f"http://127.0.0.1:{port}", env, log_path


@pytest.mark.parametrize("name", ["sqlite", "sqlite-credentials", "hub"])
def test_the_charts_configuration_starts_a_server_that_passes_its_probe(tmp_path, name):
    docs = render(VALUE_SETS[name], tmp_path)
    container = server_container(docs)
    process, url, env, log_path = _start_as_the_chart_says(docs, tmp_path)
    probe = container["readinessProbe"]["httpGet"]["path"]
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                reply = requests.get(url + probe, timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        assert reply.status_code == 200, log_path.read_text()
        assert reply.json()["status"] == "ok"
        # The base URL came from the configuration file: the API is not at the root too.
        if probe != "/" + HEALTH:
            assert requests.get(url + "/" + HEALTH, timeout=10).status_code == 404
        # The admin store is the file on the chart's volume.
        store = Path(env["LOMAS_STORE_URL"].removeprefix("sqlite:///"))
        assert store.is_file() and store.parent == tmp_path / "data"
        log = log_path.read_text()
        assert "Config option" not in log, log  # every setting in the file was recognised
    finally:
        process.terminate()
        process.wait(30)
