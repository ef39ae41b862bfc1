"""Offline deployment checks: render k8s/ like kustomize, and hold manifests and Dockerfile
to the settings the service reads. Run by .ci/check-deploy (needs PyYAML only).

  render  K8S_DIR OUT        the kustomization's objects as one multi-document YAML
  compare OURS THEIRS        the same objects, whatever the order (checks the renderer)
  check   REPO_DIR           consistency rules; prints what it checked, exits 1 on a problem
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

# Only what k8s/kustomization.yaml uses; anything else fails instead of being ignored.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

REQUIRED_SECRETS = {"VYTE_API_KEY", "API_TOKENS", "WEBHOOK_SECRET", "VYTE_WEBHOOK_TOKEN"}
# Dockerfile variables for Python and pip themselves, not settings of the service.
IMAGE_ONLY_ENV = re.compile(r"^(PATH|VIRTUAL_ENV|PYTHON\w*|PIP_\w*)$")
DEFAULT_SHUTDOWN_TIMEOUT = 20.0


# --- rendering ---------------------------------------------------------------------------


def load_docs(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def render(k8s_dir: Path) -> list[Obj]:
    """The objects `kubectl kustomize k8s_dir` produces, for the features this repo uses."""
    (kust,) = load_docs(k8s_dir / "kustomization.yaml")
    unknown = set(kust) - KUSTOMIZATION_KEYS
    if unknown:
        raise SystemExit(f"kustomization.yaml: unsupported by this renderer: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kust.get("resources", []):
        path = k8s_dir / entry
        if not path.is_file():
            raise SystemExit(f"kustomization.yaml: resource {entry} is not a file here")
        objects.extend(load_docs(path))
    namespace = kust.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        for rule in kust.get("labels", []):
            add_labels(obj, rule)
        for image in kust.get("images", []):
            set_image(obj, image)
    return objects


def add_labels(obj: Obj, rule: Obj) -> None:
    if rule.get("includeSelectors") or set(rule) - {
        "pairs",
        "includeSelectors",
        "includeTemplates",
    }:
        raise SystemExit(f"kustomization.yaml labels: unsupported entry {rule}")
    pairs = {str(k): str(v) for k, v in rule["pairs"].items()}
    obj["metadata"].setdefault("labels", {}).update(pairs)
    if not rule.get("includeTemplates"):
        return
    spec = obj.get("spec", {})
    if obj["kind"] in POD_TEMPLATE_KINDS:
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if obj["kind"] == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    for claim in spec.get("volumeClaimTemplates", []) if obj["kind"] == "StatefulSet" else []:
        claim.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def set_image(obj: Obj, rule: Obj) -> None:
    for container in containers(obj):
        name, tag = split_image(container["image"])
        if name != rule["name"]:
            continue
        new = rule.get("newName", name)
        if "digest" in rule:
            container["image"] = f"{new}@{rule['digest']}"
        else:
            new_tag = rule.get("newTag", tag)
            container["image"] = f"{new}:{new_tag}" if new_tag else new


def split_image(image: str) -> tuple[str, str | None]:
    name, _, tag = image.partition("@")[0].rpartition(":")
    if not name or "/" in tag:
        return image.partition("@")[0], None
    return name, tag


def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in POD_TEMPLATE_KINDS:
        return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def key(obj: Obj) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def compare(ours: Path, theirs: Path) -> int:
    mine = {key(o): o for o in load_docs(ours)}
    other = {key(o): o for o in load_docs(theirs)}
    differ = sorted(k for k in mine.keys() | other.keys() if mine.get(k) != other.get(k))
    for k in differ:
        print(f"  renderer and kustomize disagree on {'/'.join(k)}")
    return 1 if differ else 0


# --- consistency checks ------------------------------------------------------------------


class Dockerfile:
    """The final stage of a Dockerfile: its ENV, USER, EXPOSE, CMD and HEALTHCHECK."""

    def __init__(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        joined = re.sub(r"\\\n", " ", "\n".join(lines))
        self.env: dict[str, str] = {}
        self.user = self.cmd = self.healthcheck = ""
        self.expose: list[str] = []
        for line in joined.splitlines():
            instruction, _, rest = line.strip().partition(" ")
            match instruction.upper():
                case "FROM":
                    self.env, self.expose = {}, []
                    self.user = self.cmd = self.healthcheck = ""
                case "ENV":
                    for item in shlex.split(rest):
                        name, _, value = item.partition("=")
                        self.env[name] = value
                case "USER":
                    self.user = rest.strip()
                case "EXPOSE":
                    self.expose += rest.split()
                case "CMD":
                    self.cmd = rest.strip()
                case "HEALTHCHECK":
                    self.healthcheck = rest.strip()


class Checks:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.checked = 0

    def expect(self, ok: bool, problem: str) -> None:
        self.checked += 1
        if not ok:
            self.problems.append(problem)

    def run(self) -> int:
        k8s = self.repo / "k8s"
        objects = render(k8s)
        by_kind: dict[str, list[Obj]] = {}
        for obj in objects:
            by_kind.setdefault(obj["kind"], []).append(obj)
        (deployment,) = [
            d for d in by_kind["Deployment"] if d["metadata"]["name"] == "booking-gateway"
        ]
        (config,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == "booking-gateway"]
        secret_path = k8s / "secret.template.yaml"
        (secret,) = load_docs(secret_path)
        image = Dockerfile(self.repo / "Dockerfile")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        settings = dict(image.env)
        settings.update({k: str(v) for k, v in config["data"].items()})

        self.check_setting_names(image, config, secret, container)
        self.check_secret(secret, k8s)
        self.check_store(deployment, by_kind, settings)
        self.check_shutdown(deployment, container, settings)
        self.check_ports_and_probes(image, container, settings, by_kind)
        self.check_pods(objects, image)
        self.check_init(deployment, container)
        self.check_image(image)

        for note in self.notes:
            print(f"  note: {note}")
        for problem in self.problems:
            print(f"  FAIL: {problem}")
        print(f"  {self.checked - len(self.problems)} of {self.checked} rules hold")
        return 1 if self.problems else 0

    def check_setting_names(
        self, image: Dockerfile, config: Obj, secret: Obj, container: Obj
    ) -> None:
        """Every variable the deployment sets is one the service reads."""
        names = {n for n in image.env if not IMAGE_ONLY_ENV.match(n)}
        names |= set(config["data"]) | set(secret.get("stringData", {}))
        names |= {e["name"] for e in container.get("env", [])}
        sources = list((self.repo / "service").rglob("*.py"))
        if not (self.repo / "service" / "config.py").is_file():
            self.notes.append("service/config.py not found: setting names not cross-checked")
            return
        code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
        self.notes.append(f"{len(names)} variables set by the deployment, each checked in service/")
        for name in sorted(names):
            self.expect(
                f'"{name}"' in code or f"'{name}'" in code,
                f"{name} is set by the deployment but read nowhere in service/",
            )

    def check_secret(self, secret: Obj, k8s: Path) -> None:
        values = secret.get("stringData", {})
        self.expect(secret["kind"] == "Secret", "secret.template.yaml is not a Secret")
        self.expect("data" not in secret, "secret.template.yaml must not carry data:")
        self.expect(
            set(values) >= REQUIRED_SECRETS,
            f"secret.template.yaml lacks {sorted(REQUIRED_SECRETS - set(values))}",
        )
        filled = sorted(k for k, v in values.items() if v not in ("", None))
        self.expect(not filled, f"secret.template.yaml has values for {filled}: keep it a template")
        (kust,) = load_docs(k8s / "kustomization.yaml")
        self.expect(
            "secret.template.yaml" not in kust.get("resources", []),
            "kustomization.yaml must not apply the Secret template over the real Secret",
        )

    def check_store(
        self, deployment: Obj, by_kind: dict[str, list[Obj]], settings: dict[str, str]
    ) -> None:
        replicas = [deployment["spec"].get("replicas", 1)]
        replicas += [h["spec"]["maxReplicas"] for h in by_kind.get("HorizontalPodAutoscaler", [])]
        store = settings.get("STORE_URL", "")
        if max(replicas) > 1:
            self.expect(
                store.startswith(("redis://", "rediss://")),
                f"several replicas need STORE_URL=redis(s)://…, not {store!r}",
            )
        for hpa in by_kind.get("HorizontalPodAutoscaler", []):
            self.expect(
                hpa["spec"].get("minReplicas", 1) >= 2, "HPA minReplicas must be at least 2"
            )
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        self.expect(rolling.get("maxUnavailable") == 0, "rolling update needs maxUnavailable: 0")

    def check_shutdown(self, deployment: Obj, container: Obj, settings: dict[str, str]) -> None:
        """The pod lives through the preStop delay plus the app's own drain."""
        shutdown = float(settings.get("SHUTDOWN_TIMEOUT") or DEFAULT_SHUTDOWN_TIMEOUT)
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        command = pre_stop.get("exec", {}).get("command", [])
        delay = (
            float(command[1])
            if command[:1] == ["sleep"]
            else float(pre_stop.get("sleep", {}).get("seconds", 0))
        )
        self.expect(delay > 0, "the container needs a preStop delay so endpoints drain")
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        self.expect(
            grace > delay + shutdown,
            f"terminationGracePeriodSeconds {grace} must exceed the preStop delay ({delay:g} s)"
            f" plus SHUTDOWN_TIMEOUT ({shutdown:g} s)",
        )

    def check_ports_and_probes(
        self,
        image: Dockerfile,
        container: Obj,
        settings: dict[str, str],
        by_kind: dict[str, list[Obj]],
    ) -> None:
        port = int(settings.get("PORT") or 8080)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.expect(ports.get("http") == port, f"containerPort http must be PORT ({port})")
        self.expect(
            image.env.get("PORT", "8080") == str(port), "Dockerfile PORT differs from the ConfigMap"
        )
        self.expect(str(port) in image.expose, f"Dockerfile must EXPOSE {port}")
        self.expect(settings.get("HOST") == "0.0.0.0", "the container must listen on HOST=0.0.0.0")  # noqa: S104
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            get = container.get(probe, {}).get("httpGet", {})
            self.expect(get.get("path") == path, f"{probe} must GET {path}")
            self.expect(
                ports.get(get.get("port")) == port or get.get("port") == port,
                f"{probe} port is not PORT",
            )
        for service in by_kind.get("Service", []):
            if service["metadata"]["name"] == "booking-gateway":
                targets = {p["targetPort"] for p in service["spec"]["ports"]}
                self.expect(targets <= {"http", port}, "Service must target the http port")

    def check_pods(self, objects: list[Obj], image: Dockerfile) -> None:
        for obj in objects:
            spec = pod_spec(obj)
            if spec is None:
                continue
            name = "/".join(key(obj)[::2])
            pod_sc = spec.get("securityContext", {})
            self.expect(
                spec.get("automountServiceAccountToken") is False,
                f"{name}: mounts a service-account token",
            )
            self.expect(pod_sc.get("runAsNonRoot") is True, f"{name}: pod needs runAsNonRoot")
            self.expect(
                pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                f"{name}: pod needs seccomp RuntimeDefault",
            )
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c.get("securityContext", {})
                where = f"{name}/{c['name']}"
                self.expect(
                    sc.get("readOnlyRootFilesystem") is True,
                    f"{where}: needs readOnlyRootFilesystem",
                )
                self.expect(
                    sc.get("allowPrivilegeEscalation") is False,
                    f"{where}: allowPrivilegeEscalation",
                )
                self.expect(
                    sc.get("capabilities", {}).get("drop") == ["ALL"],
                    f"{where}: must drop ALL capabilities",
                )
                res = c.get("resources", {})
                self.expect(
                    {"cpu", "memory"} <= set(res.get("requests", {})),
                    f"{where}: needs cpu/memory requests",
                )
                self.expect("memory" in res.get("limits", {}), f"{where}: needs a memory limit")
            if obj["metadata"]["name"] == "booking-gateway":
                uid = str(pod_sc.get("runAsUser"))
                self.expect(
                    image.user.split(":")[0] == uid,
                    f"{name}: runAsUser {uid} is not the image's USER",
                )

    def check_init(self, deployment: Obj, container: Obj) -> None:
        """An init container runs `booking-gateway check` on the very settings the gateway gets."""
        spec = deployment["spec"]["template"]["spec"]
        checks = [
            c
            for c in spec.get("initContainers", [])
            if c.get("command", [])[:2] == ["booking-gateway", "check"]
        ]
        self.expect(
            len(checks) == 1, "the Deployment needs one `booking-gateway check` init container"
        )
        for check in checks:
            self.expect(
                check.get("image") == container.get("image"),
                "the check init container must run the gateway's image",
            )
            self.expect(
                check.get("envFrom") == container.get("envFrom")
                and check.get("env") == container.get("env"),
                "the check init container must get exactly the gateway's settings",
            )
            flags = set(check["command"][2:]) - {"--allow-vyte-outage"}
            self.expect(not flags, f"unexpected check flags {sorted(flags)}")

    def check_image(self, image: Dockerfile) -> None:
        self.expect(
            re.fullmatch(r"\d+(:\d+)?", image.user) is not None, "Dockerfile USER must be numeric"
        )
        self.expect(
            image.cmd == '["booking-gateway", "serve"]', 'CMD must be ["booking-gateway", "serve"]'
        )
        self.expect("/livez" in image.healthcheck, "HEALTHCHECK must probe /livez")


def main(argv: list[str]) -> int:
    match argv:
        case ["render", k8s_dir, out]:
            with open(out, "w", encoding="utf-8") as f:
                yaml.safe_dump_all(render(Path(k8s_dir)), f, sort_keys=False)
            return 0
        case ["compare", ours, theirs]:
            return compare(Path(ours), Path(theirs))
        case ["check", repo]:
            return Checks(Path(repo)).run()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
