"""The optional monitoring component (k8s/components/monitoring) fits the base manifests.

kubernetes-validate has no schema for the ServiceMonitor CRD offline, so these rules hold it
to the Service it selects instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
COMPONENT = K8S / "components" / "monitoring"


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_the_component_is_a_kustomize_component_of_existing_files() -> None:
    (kustomization,) = load(COMPONENT / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    assert kustomization["resources"]
    for entry in kustomization["resources"]:
        assert (COMPONENT / entry).is_file(), entry
    # Optional: the base does not turn it on (clusters without the Operator lack the CRD).
    (base,) = load(K8S / "kustomization.yaml")
    assert "components" not in base


def test_the_service_monitor_scrapes_the_gateway_service_metrics() -> None:
    (monitor,) = load(COMPONENT / "servicemonitor.yaml")
    (service,) = load(K8S / "service.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert "namespace" not in monitor["metadata"]  # the base's namespace applies
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"
