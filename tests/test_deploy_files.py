"""The deployment files agree with each other and with the code, so they cannot drift apart.

Ratio1's own deployment files disagree (manifests naming a PVC that does not exist, a mount path that is not the
image's, a compose file expecting an image tag no script builds). Here every name one manifest references exists in
another, mount paths and users match the image, the image name matches what ``docker/build.sh`` builds, the
ConfigMap is generated from the node's own config files, every ``EE_*`` variable set anywhere is one the node reads,
``kubernetes-validate`` accepts every manifest (offline) and ``hadolint`` every Dockerfile. No Docker daemon needed:
``tests/test_docker.py`` (``pytest -m docker``) runs the real thing.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import load_module

from edge_engine import constants as C
from edge_engine.comms.comms_settings import ENV_FIELDS

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE_DIR = REPO / "docker-compose"
K8S = REPO / "k8s"
STACKS = ["docker-compose.yml", "docker-compose.three-nodes.yml"]
OVERRIDES = {"docker-compose.debug.yml": ["docker-compose.yml"], "docker-compose.local-images.yml": STACKS}
DOCKERFILES = [DOCKERFILE, *sorted((COMPOSE_DIR / "images").glob("*.Dockerfile"))]


# --- readers ----------------------------------------------------------------------------------------------------
def dockerfile(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
            pending = ""
    return result


def instructions(name: str, path: Path = DOCKERFILE) -> list[str]:
    return [args for word, args in dockerfile(path) if word == name]


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage (the image that ships)."""
    items = dockerfile()
    last = max(i for i, (word, _) in enumerate(items) if word == "FROM")
    return items[last:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in runtime_stage():
        if word == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                env[key] = value.strip('"')
    return env


def image_name() -> str:
    match = re.search(r'IMAGE_NAME="\$\{IMAGE_NAME:-([^}]+)\}"', (REPO / "docker" / "build.sh").read_text())
    assert match, "docker/build.sh must define IMAGE_NAME"
    return match.group(1)


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path.name, doc))
    return docs


def k8s(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_docs() if doc["kind"] == kind]


def compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / name).read_text(encoding="utf-8"))


def node_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in data["services"].items() if "EDGE_NODE_IMAGE" in str(svc.get("image", ""))}


def pod_spec() -> dict[str, Any]:
    (statefulset,) = k8s("StatefulSet")
    return statefulset["spec"]["template"]["spec"]


def node_container() -> dict[str, Any]:
    (container,) = pod_spec()["containers"]
    return container


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


# --- linters and validators -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(path: Path) -> None:
    result = subprocess.run([tool("hadolint"), str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_kubernetes_validate_accepts_every_manifest(name: str) -> None:
    from kubernetes_validate import utils

    for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")):
        utils.validate(doc, utils.latest_version(), strict=True)  # raises on any schema error or unknown field


def test_shell_scripts_parse() -> None:
    for script in sorted((REPO / "docker").glob("*.sh")):
        shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"


# --- Kubernetes: every reference resolves ---------------------------------------------------------------------
def test_k8s_every_referenced_name_exists() -> None:
    names = {(doc["kind"], doc["metadata"]["name"]) for _, doc in k8s_docs()}
    (namespace,) = k8s("Namespace")
    for file, doc in k8s_docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace["metadata"]["name"], f"{file}: wrong namespace"
    (statefulset,) = k8s("StatefulSet")
    spec = pod_spec()
    assert ("Service", statefulset["spec"]["serviceName"]) in names
    assert ("ServiceAccount", spec["serviceAccountName"]) in names
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    for volume in volumes.values():
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
        if "secret" in volume:
            assert ("Secret", volume["secret"]["secretName"]) in names
    container = node_container()
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes or mount["name"] in claims, f"volumeMount {mount['name']} has no volume"
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            assert ("Secret", source["secretRef"]["name"]) in names
        if "configMapRef" in source:
            assert ("ConfigMap", source["configMapRef"]["name"]) in names
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            assert ("Secret", ref["secretKeyRef"]["name"]) in names


def test_k8s_selectors_match_labels() -> None:
    (statefulset,) = k8s("StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selector = statefulset["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), "the StatefulSet's selector does not match its pods"
    (service,) = k8s("Service")
    assert service["spec"]["selector"].items() <= labels.items(), "the Service's selector does not match the pods"


def test_k8s_config_files_come_from_the_configmap() -> None:
    """EE_CONFIG / EE_APP_CONFIG point at keys of the mounted ConfigMap."""
    container, spec = node_container(), pod_spec()
    (configmap,) = k8s("ConfigMap")
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == configmap["metadata"]["name"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    env = {var["name"]: var.get("value") for var in container["env"]}
    for name in (C.ENV_CONFIG, C.ENV_APP_CONFIG):
        path = Path(env[name])
        assert str(path.parent) == mount["mountPath"], f"{name}={path} is not in the ConfigMap mount"
        assert path.name in configmap["data"], f"{name}={path}: the ConfigMap has no key {path.name}"


def test_k8s_matches_the_image() -> None:
    """Image name, cache mount, user, shared memory and probes are those of docker/."""
    container, spec = node_container(), pod_spec()
    assert container["image"] == f"{image_name()}:{C.DEFAULT_NETWORK}"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    (statefulset,) = k8s("StatefulSet")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts.get(C.IMAGE_CACHE_DIR) == claim["metadata"]["name"], "the claim is not mounted at the image's cache"
    dshm = next(v for v in spec["volumes"] if v["name"] == mounts["/dev/shm"])
    assert dshm["emptyDir"]["medium"] == "Memory", "/dev/shm must be a memory-backed emptyDir (DECISIONS 14)"
    uid = re.search(r"--uid (\d+)", " ".join(instructions("RUN", DOCKERFILE))).group(1)
    assert spec["securityContext"]["runAsUser"] == int(uid) == spec["securityContext"]["fsGroup"]
    for probe in ("startupProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert (REPO / "cmds" / command[0]).is_file(), f"{probe} runs {command[0]}, which is not in cmds/"


def test_configmap_is_generated_from_the_node_configs() -> None:
    module = load_module(K8S / "generate_configmap.py")
    assert module.TARGET.read_text(encoding="utf-8") == module.render(), "run: python k8s/generate_configmap.py"
    (configmap,) = k8s("ConfigMap")
    for key, source in module.SOURCES.items():
        assert json.loads(configmap["data"][key]) == json.loads((REPO / source).read_text(encoding="utf-8"))


# --- the image ----------------------------------------------------------------------------------------------------
def test_image_layout() -> None:
    """Code under /edge_node, every cmds/ executable on PATH, the cache a volume, health from cmds/, no demo."""
    stage = runtime_stage()
    env = image_env()
    assert ("WORKDIR", "/edge_node") in stage
    assert "/edge_node/cmds" in env["PATH"].split(":")
    assert env[C.ENV_CACHE_DIR] == C.IMAGE_CACHE_DIR
    assert env[C.ENV_DEMO] == "0", "the image must not start the demo unless asked (DECISIONS 12)"
    assert env[C.ENV_EVM_NET] == "${NETWORK}"
    assert ("VOLUME", f'["{C.IMAGE_CACHE_DIR}"]') in stage
    copies = instructions("COPY")
    assert "cmds/ cmds/" in copies and "edge_engine/ edge_engine/" in copies
    for script in (REPO / "cmds").iterdir():
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
        assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3"), script
    (health,) = [args for word, args in stage if word == "HEALTHCHECK"]
    command = json.loads(health.split("CMD", 1)[1])
    assert (REPO / "cmds" / command[0]).is_file()
    (entrypoint,) = [json.loads(args) for word, args in stage if word == "ENTRYPOINT"]
    assert (REPO / entrypoint[-1].removeprefix("/edge_node/")).is_file()
    labels = " ".join(args for word, args in stage if word == "LABEL")
    for label in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_dockerfile_arguments() -> None:
    # (one ARG instruction may define several: ARG A=1 B=2)
    defined = [a for line in instructions("ARG") for a in shlex.split(line)]
    args = dict(re.match(r"(\w+)(?:=(.*))?", a).groups() for a in defined)  # type: ignore[union-attr]
    assert args["BASE_IMAGE"] == "python:3.13-slim-trixie"
    assert args["NETWORK"] in C.NETWORKS
    assert args["VARIANT"] == "cpu"
    build = (REPO / "docker" / "build.sh").read_text()
    for network in C.NETWORKS:
        assert network in build, f"docker/build.sh does not offer --network {network}"


def test_every_copied_file_is_in_the_build_context() -> None:
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    for pattern in (".env", "_local_cache", ".venv", ".git"):
        assert pattern in ignored, f".dockerignore must keep {pattern} out of the build context"
    for path in DOCKERFILES:
        context = REPO if path == DOCKERFILE or "seaweedfs" in path.name else COMPOSE_DIR
        for args in instructions("COPY", path):
            if args.startswith("--from"):
                continue
            for source in args.split()[:-1]:
                matches = list(context.glob(source.rstrip("/")))
                assert matches, f"{path.name}: COPY {source}: nothing in the build context"
                top = source.split("/")[0].rstrip("*")
                assert top not in ignored, f"{path.name}: COPY {source} is excluded by .dockerignore"


# --- compose ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", STACKS + list(OVERRIDES))
def test_compose_files_reference_only_defined_things(name: str) -> None:
    data = compose(name)
    assert data["version"] == "2.4", "file format 2.4: docker-compose 1.29 and Compose v2 both read it with shm_size"
    bases = [compose(base) for base in OVERRIDES.get(name, [])]
    services = set(data["services"]).union(*(set(b["services"]) for b in bases))
    volumes = set(data.get("volumes") or {}).union(*(set(b.get("volumes") or {}) for b in bases))
    for base in bases:
        assert set(data["services"]) <= set(base["services"]), f"{name} overrides services {base} does not have"
    for service, svc in data["services"].items():
        for dependency in svc.get("depends_on") or {}:
            assert dependency in services, f"{name} › {service} depends on unknown service {dependency}"
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} › {service} mounts missing {source}"
            else:
                assert source in volumes, f"{name} › {service} uses undeclared volume {source}"
        build = svc.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name} › {service}: no {build['dockerfile']}"


@pytest.mark.parametrize("name", STACKS)
def test_compose_nodes_match_the_image(name: str) -> None:
    data = compose(name)
    nodes = node_services(data)
    assert nodes, f"{name} has no edge node service"
    cache_volumes, aliases = [], []
    for service, svc in nodes.items():
        assert svc["image"] == f"${{EDGE_NODE_IMAGE:-{image_name()}:{C.DEFAULT_NETWORK}}}"
        assert svc.get("shm_size"), f"{name} › {service}: set shm_size (DECISIONS 14)"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert C.IMAGE_CACHE_DIR in mounts, f"{name} › {service}: no volume at {C.IMAGE_CACHE_DIR}"
        cache_volumes.append(mounts[C.IMAGE_CACHE_DIR])
        aliases.append(svc["environment"][C.ENV_ID])
        assert svc["environment"]["EE_MQTT_HOST"] in data["services"], "the node's broker is not a service"
    assert len(set(cache_volumes)) == len(nodes), f"{name}: nodes share a cache volume (they would share identity)"
    assert len(set(aliases)) == len(nodes), f"{name}: nodes share an alias"
    if name == "docker-compose.three-nodes.yml":
        assert len(nodes) == 3


def test_compose_variables_are_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (COMPOSE_DIR / ".env.example").read_text(), re.M))
    for path in sorted(COMPOSE_DIR.glob("docker-compose*.yml")):
        for variable in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text()):
            assert variable in documented, f"{path.name} uses ${{{variable}}}, not in docker-compose/.env.example"


# --- environment variables -------------------------------------------------------------------------------------------
def known_variables() -> set[str]:
    """What the node reads: constants.ENV_VARS, the comms settings, and $EE_* references in the app config."""
    refs = set(re.findall(r'"\$(EE_[A-Z0-9_]+)"', (REPO / C.APP_CONFIG_FILE).read_text(encoding="utf-8")))
    return set(C.ENV_VARS) | set(ENV_FIELDS) | refs


def deployment_variables() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    found["docker/Dockerfile"] = {k for k in image_env() if k.startswith("EE_")}
    for path in sorted(COMPOSE_DIR.glob("docker-compose*.yml")):
        names: set[str] = set()
        for svc in compose(path.name)["services"].values():
            names |= {k for k in (svc.get("environment") or {}) if k.startswith("EE_")}
        found[f"docker-compose/{path.name}"] = names
    found["docker-compose/.env.example"] = set(
        re.findall(r"^#?\s*(EE_[A-Z0-9_]+)=", (COMPOSE_DIR / ".env.example").read_text(), re.M)
    )
    names = {var["name"] for var in node_container()["env"]}
    for secret in k8s("Secret"):
        names |= set(secret.get("stringData") or {}) | set(secret.get("data") or {})
    found["k8s/"] = names
    return found


def test_every_ee_variable_in_the_deployment_files_is_known_to_the_node() -> None:
    known = known_variables()
    for where, names in deployment_variables().items():
        unknown = sorted(names - known)
        assert not unknown, f"{where} sets {unknown}, which the node does not read (constants.ENV_VARS / ENV_FIELDS)"


def test_network_profiles() -> None:
    assert C.DEFAULT_NETWORK in C.NETWORKS
    for profile in C.NETWORKS.values():
        assert profile["root_topic"]
