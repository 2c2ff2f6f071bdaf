#!/usr/bin/env python3
"""Checks on a rendered overlay that a schema cannot express: the hardening, probes and wiring
that docs/operations.md promises, and that every reference (Secret, ConfigMap, Service,
ServiceAccount) resolves. Usage: lint_rendered.py OVERLAY_NAME RENDERED.yaml
Called by deploy/check.sh; exits 1 listing every violation."""

import sys

import yaml

# Secrets the base references but never creates: the dev overlay generates them, prod expects
# them to exist (docs/operations.md). Optional ones may be absent even in dev.
EXTERNAL_SECRETS = {"edgecart-bootstrap-token", "edgecart-admin-token", "edgecart-node-admin"}
PROD_EXTERNAL = EXTERNAL_SECRETS | {"edgecart-storefront-tls"}
UID = 65532
GRACE = 30

errors = []


def err(msg):
    errors.append(msg)


def base_name(obj_name, objs, kind):
    """Name of the object of `kind` that `obj_name` refers to (generated names carry a hash)."""
    return obj_name in {o["metadata"]["name"] for o in objs if o["kind"] == kind}


def main():
    overlay, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        objs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != "edgecart":
            err(f"{o['kind']}/{o['metadata']['name']}: not in namespace edgecart")

    def one(kind, name):
        found = [o for o in by_kind.get(kind, []) if o["metadata"]["name"] == name]
        if len(found) != 1:
            err(f"expected exactly one {kind}/{name}, found {len(found)}")
            return None
        return found[0]

    one("Namespace", "edgecart")
    ds = one("DaemonSet", "edgecart-node")
    sts = one("StatefulSet", "edgecart-hub")
    node_svc = one("Service", "edgecart-node")
    hub_svc = one("Service", "edgecart-hub")
    headless = one("Service", "edgecart-hub-headless")
    one("PodDisruptionBudget", "edgecart-hub")
    deny = one("NetworkPolicy", "edgecart-default-deny")
    for name in ("edgecart-allow-dns", "edgecart-node-ingress-http", "edgecart-node-egress-hub",
                 "edgecart-hub-ingress-grpc", "edgecart-node-egress-external", "edgecart-hub-egress-external"):
        one("NetworkPolicy", name)
    if overlay == "prod":
        one("Ingress", "edgecart-storefront")
    if None in (ds, sts, node_svc, hub_svc, headless, deny):
        return

    # --- wiring -----------------------------------------------------------------------------
    if deny["spec"]["podSelector"] != {} or sorted(deny["spec"]["policyTypes"]) != ["Egress", "Ingress"]:
        err("edgecart-default-deny must select every pod for Ingress and Egress")
    if node_svc["spec"].get("internalTrafficPolicy") != "Local":
        err("Service edgecart-node: internalTrafficPolicy must be Local")
    if headless["spec"].get("clusterIP") != "None":
        err("Service edgecart-hub-headless must be headless")
    if sts["spec"]["serviceName"] != "edgecart-hub-headless":
        err("StatefulSet edgecart-hub: serviceName must be the headless Service")
    if not sts["spec"].get("volumeClaimTemplates"):
        err("StatefulSet edgecart-hub: no volumeClaimTemplates")
    ru = ds["spec"].get("updateStrategy", {})
    if ru.get("type") != "RollingUpdate" or ru.get("rollingUpdate", {}).get("maxUnavailable") != 1:
        err("DaemonSet edgecart-node: RollingUpdate with maxUnavailable 1 expected")
    if ru.get("rollingUpdate", {}).get("maxSurge", 0) not in (0, "0", "0%"):
        err("DaemonSet edgecart-node: maxSurge must be 0 (one SQLite writer per machine)")

    for w in (ds, sts):
        check_pod(w, objs, overlay)

    node_c = ds["spec"]["template"]["spec"]["containers"][0]
    hub_c = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in node_c.get("env", [])}
    if env.get("EDGECART_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
        err("DaemonSet edgecart-node: EDGECART_NODE_ID must come from spec.nodeName")
    if node_c["command"] != ["/usr/local/bin/edgecart-node"] or hub_c["command"] != ["/usr/local/bin/edgecart-hub"]:
        err("workload commands must pick /usr/local/bin/edgecart-node and /usr/local/bin/edgecart-hub")
    vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    hp = vols.get("data", {}).get("hostPath", {})
    if hp.get("path") != "/var/lib/edgecart" or hp.get("type") != "DirectoryOrCreate":
        err("DaemonSet edgecart-node: data must be hostPath /var/lib/edgecart (DirectoryOrCreate)")
    if "--data-dir=/var/lib/edgecart" not in node_c["args"] or "--http-addr=0.0.0.0:8080" not in node_c["args"]:
        err("DaemonSet edgecart-node: args must set --data-dir=/var/lib/edgecart --http-addr=0.0.0.0:8080")
    if "--grpc-addr=0.0.0.0:50051" not in hub_c["args"]:
        err("StatefulSet edgecart-hub: args must set --grpc-addr=0.0.0.0:50051")
    ports = {p["name"]: p["containerPort"] for p in node_c["ports"]}
    if ports.get("http") != 8080:
        err("DaemonSet edgecart-node: container port http must be 8080 (= --http-addr)")
    if {p["name"]: p["containerPort"] for p in hub_c["ports"]}.get("grpc") != 50051:
        err("StatefulSet edgecart-hub: container port grpc must be 50051 (= --grpc-addr)")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if hub_c.get(probe, {}).get("grpc", {}).get("port") != 50051:
            err(f"StatefulSet edgecart-hub: {probe} must be a gRPC probe on 50051")
    if node_c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        err("DaemonSet edgecart-node: livenessProbe must GET /healthz")
    if node_c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        err("DaemonSet edgecart-node: readinessProbe must GET /readyz")
    ann = ds["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "8080" \
            or ann.get("prometheus.io/path") != "/metrics":
        err("DaemonSet edgecart-node: Prometheus scrape annotations missing")
    hub_ann = sts["spec"]["template"]["metadata"].get("annotations", {})
    hub_ports = {p["name"]: p["containerPort"] for p in hub_c["ports"]}
    if hub_ann.get("prometheus.io/scrape") != "true" or hub_ann.get("prometheus.io/path") != "/metrics" \
            or hub_ann.get("prometheus.io/port") != str(hub_ports.get("metrics")) \
            or f"--metrics-addr=0.0.0.0:{hub_ports.get('metrics')}" not in hub_c.get("args", []):
        err("StatefulSet edgecart-hub: Prometheus scrape annotations must name the metrics port "
            "that --metrics-addr listens on")

    # the hub URL in the node's ConfigMap must name the hub Service and its port
    cm_names = [r["configMapRef"]["name"] for r in node_c.get("envFrom", []) if "configMapRef" in r]
    hub_url = None
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"] in cm_names:
            hub_url = cm["data"].get("EDGECART_HUB_URL", hub_url)
    svc_port = hub_svc["spec"]["ports"][0]["port"]
    if hub_url != f"http://{hub_svc['metadata']['name']}:{svc_port}":
        err(f"node ConfigMap EDGECART_HUB_URL={hub_url!r} does not point at Service edgecart-hub:{svc_port}")

    if overlay == "prod":
        pod = ds["spec"]["template"]["spec"]
        if not pod.get("nodeSelector") or not pod.get("tolerations"):
            err("prod DaemonSet edgecart-node: nodeSelector and tolerations for edge machines expected")
        if by_kind.get("Secret"):
            err("prod must not render Secrets (they are created outside the repository)")
        for o in by_kind.get("Ingress", []):
            for t in o["spec"].get("tls", []):
                if t["secretName"] not in PROD_EXTERNAL:
                    err(f"Ingress TLS secret {t['secretName']} is not a documented external Secret")
            for r in o["spec"]["rules"]:
                for p in r["http"]["paths"]:
                    if not base_name(p["backend"]["service"]["name"], objs, "Service"):
                        err(f"Ingress backend Service {p['backend']['service']['name']} not rendered")
        tag = node_c["image"].rsplit(":", 1)
        if len(tag) != 2 or tag[1] in ("latest", "dev"):
            err(f"prod image {node_c['image']!r} must carry a release tag")


def check_pod(w, objs, overlay):
    kind, name = w["kind"], w["metadata"]["name"]
    tpl = w["spec"]["template"]
    pod = tpl["spec"]
    where = f"{kind}/{name}"
    if tpl["metadata"]["labels"].get("app.kubernetes.io/name") != w["spec"]["selector"]["matchLabels"].get(
            "app.kubernetes.io/name"):
        err(f"{where}: selector does not match the pod labels")
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != UID:
        err(f"{where}: pod must runAsNonRoot as uid {UID}")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(f"{where}: pod seccompProfile must be RuntimeDefault")
    if pod.get("terminationGracePeriodSeconds") != GRACE:
        err(f"{where}: terminationGracePeriodSeconds must be {GRACE} (graceful shutdown)")
    if pod.get("automountServiceAccountToken") is not False:
        err(f"{where}: automountServiceAccountToken must be false")
    if not base_name(pod.get("serviceAccountName", ""), objs, "ServiceAccount"):
        err(f"{where}: ServiceAccount {pod.get('serviceAccountName')} not rendered")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") != UID:
            err(f"{cw}: must runAsNonRoot as uid {UID}")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(f"{cw}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(f"{cw}: allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            err(f"{cw}: capabilities must drop ALL and add none")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            err(f"{cw}: seccompProfile must be RuntimeDefault")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits", {}).get("memory"):
            err(f"{cw}: resource requests and a memory limit expected")
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        if not tmp or vols.get(tmp[0]["name"], {}).get("emptyDir", {}).get("medium") != "Memory":
            err(f"{cw}: /tmp must be a memory-backed emptyDir (read-only root)")
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                err(f"{cw}: {probe} missing")
    for c in pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("allowPrivilegeEscalation") is not False \
                or sc.get("readOnlyRootFilesystem") is not True:
            err(f"{where} init container {c['name']}: must drop ALL, no escalation, read-only root")
        if set(sc.get("capabilities", {}).get("add", [])) - {"CHOWN", "FOWNER"}:
            err(f"{where} init container {c['name']}: may add CHOWN/FOWNER only")
    # every reference must resolve: in dev to a rendered object, in prod to a rendered object or
    # a documented external Secret
    for c in pod["containers"] + pod.get("initContainers", []):
        for r in c.get("envFrom", []):
            if "configMapRef" in r and not base_name(r["configMapRef"]["name"], objs, "ConfigMap"):
                err(f"{where}: ConfigMap {r['configMapRef']['name']} not rendered")
        for e in c.get("env", []):
            vf = e.get("valueFrom", {})
            if "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                secret = [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == ref["name"]]
                if secret:
                    data = {**secret[0].get("data", {}), **secret[0].get("stringData", {})}
                    if ref["key"] not in data:
                        err(f"{where}: Secret {ref['name']} has no key {ref['key']}")
                elif overlay == "prod" and ref["name"] in EXTERNAL_SECRETS:
                    pass
                elif ref.get("optional") and ref["name"] in EXTERNAL_SECRETS:
                    pass
                else:
                    err(f"{where}: env {e['name']}: Secret {ref['name']} not rendered")
            if "configMapKeyRef" in vf and not base_name(vf["configMapKeyRef"]["name"], objs, "ConfigMap"):
                err(f"{where}: env {e['name']}: ConfigMap {vf['configMapKeyRef']['name']} not rendered")


if __name__ == "__main__":
    main()
    for e in errors:
        print(f"ERROR [{sys.argv[1]}] {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"ok [{sys.argv[1]}] rendered manifests meet the deployment policy")
