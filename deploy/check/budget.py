#!/usr/bin/env python3
"""Does the whole platform fit the free tier? Sums the CPU and memory requests of

  (a) the app: a rendered manifest of charts/todo (helm template ... > FILE), every
      Deployment / StatefulSet x replicas (an HPA's minReplicas when it scales the workload),
      every DaemonSet x nodes; a pod's request is the Kubernetes effective request:
      max(largest init container, sum of the app containers), native sidecars (init
      containers with restartPolicy Always) counted with both; a pod with dapr.io/enabled
      gets a daprd sidecar of its dapr.io/sidecar-*-request annotations;
  (b) the stacks, from deploy/stacks/<chart>/values.yaml + values-<cloud>.yaml +
      values-<env>.yaml merged: each component that runs with those values, with the
      requests those values give it. A running component whose requests our values do not
      set fails the check ("no request for X"), so nothing counts as zero by omission;
  (c) the per-node reservation of the target (deploy/check/budget-oke.yaml: kubelet, system
      daemons, eviction threshold, the provider's kube-system pods);

and fails when the total exceeds the target's capacity (nodes x node size), or when the pods
cannot be packed onto the nodes (first-fit decreasing, per node, DaemonSets on every node).
Helm hook Jobs and other run-once pods are listed apart: each must fit in what is left on
one node, they do not add to the total.

    budget.py --app rendered.yaml [--cloud oke] [--env dev] [--target budget-oke.yaml]
              [--nodes N] [--node-cpu 1000m] [--node-memory 6144Mi] [--dapr auto|on|off]
Exit 0: fits; 1: over budget or a request missing; 2: bad input.
"""
import argparse
import math
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stackvalues as sv  # noqa: E402


class Missing(Exception):
    pass


# ---------------------------------------------------------------- quantities

_MEM = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": 1024 ** 2,
        "Gi": 1024 ** 3, "Ti": 1024 ** 4, "m": 1e-3}


def cpu_m(q):
    """CPU quantity -> millicores."""
    s = str(q).strip()
    if s.endswith("m"):
        return float(s[:-1])
    return float(s) * 1000


def mem_b(q):
    """Memory quantity -> bytes."""
    m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([kMGT]i?|m)?", str(q).strip())
    if not m:
        raise ValueError(f"not a memory quantity: {q!r}")
    return float(m.group(1)) * _MEM[m.group(2) or ""]


def fmt_cpu(m):
    return f"{m:.0f}m"


def fmt_mem(b):
    return f"{b / 1024 ** 2:.0f}Mi"


# ---------------------------------------------------------------- components

class Component:
    def __init__(self, source, name, cpu, mem, replicas=1, per_node=False, transient=False, note=""):
        self.source, self.name, self.cpu, self.mem = source, name, cpu, mem
        self.replicas, self.per_node, self.transient, self.note = replicas, per_node, transient, note

    def count(self, nodes):
        return nodes if self.per_node else self.replicas


def requests_of(resources, what):
    """(cpu_m, mem_b) of a resources block; Missing if either request is not set."""
    req = (resources or {}).get("requests") or {}
    if "cpu" not in req or "memory" not in req:
        have = ", ".join(sorted(req)) or "none"
        raise Missing(f"no request for {what} (cpu and memory requests needed; set: {have})")
    return cpu_m(req["cpu"]), mem_b(req["memory"])


def pod_effective(spec, what, extra=()):
    """Effective request of a pod spec: max(init containers, sum of app containers), with
    native sidecars (restartPolicy: Always init containers) added to both sides."""
    sidecar_cpu = sidecar_mem = 0.0
    init_cpu = init_mem = 0.0
    for c in spec.get("initContainers") or []:
        cpu, mem = requests_of(c.get("resources"), f"{what} init container {c.get('name')}")
        if c.get("restartPolicy") == "Always":
            sidecar_cpu += cpu
            sidecar_mem += mem
        else:
            init_cpu = max(init_cpu, sidecar_cpu + cpu)
            init_mem = max(init_mem, sidecar_mem + mem)
    app_cpu, app_mem = sidecar_cpu, sidecar_mem
    for c in spec.get("containers") or []:
        cpu, mem = requests_of(c.get("resources"), f"{what} container {c.get('name')}")
        app_cpu += cpu
        app_mem += mem
    for cpu, mem in extra:
        app_cpu += cpu
        app_mem += mem
    return max(init_cpu, app_cpu), max(init_mem, app_mem)


# ---------------------------------------------------------------- (a) the app

def app_components(path, dapr_mode):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
    hpa_min = {}
    for d in docs:
        if d.get("kind") == "HorizontalPodAutoscaler":
            ref = d["spec"].get("scaleTargetRef", {})
            hpa_min[(ref.get("kind"), ref.get("name"))] = (
                d["spec"].get("minReplicas", 1), d["spec"].get("maxReplicas"))
    out, uses_dapr, gateways = [], False, 0
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        if kind == "Gateway":
            gateways += 1
        if kind not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"):
            continue
        if kind == "CronJob":
            tmpl = d["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            tmpl = {"metadata": d.get("metadata", {}), "spec": d["spec"]}
        else:
            tmpl = d["spec"]["template"]
        ann = (tmpl.get("metadata") or {}).get("annotations") or {}
        extra, note = [], ""
        if str(ann.get("dapr.io/enabled", "")).lower() == "true" and dapr_mode != "off":
            uses_dapr = True
            if "dapr.io/sidecar-cpu-request" not in ann or "dapr.io/sidecar-memory-request" not in ann:
                raise Missing(f"no request for the daprd sidecar of {kind} {name} "
                              "(dapr.io/sidecar-cpu-request, dapr.io/sidecar-memory-request)")
            extra.append((cpu_m(ann["dapr.io/sidecar-cpu-request"]), mem_b(ann["dapr.io/sidecar-memory-request"])))
            note = "+ daprd"
        cpu, mem = pod_effective(tmpl["spec"], f"{kind} {name}", extra)
        hook = (d.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook")
        if kind in ("Job", "CronJob", "Pod") or hook:
            out.append(Component("app", f"{kind} {name}", cpu, mem, 1, transient=True,
                                 note=f"hook {hook}" if hook else "run-once"))
            continue
        if kind == "DaemonSet":
            out.append(Component("app", f"{kind} {name}", cpu, mem, per_node=True, note=note))
            continue
        replicas = d["spec"].get("replicas")
        if (kind, name) in hpa_min:
            lo, hi = hpa_min[(kind, name)]
            replicas = lo
            note = (note + f" HPA {lo}..{hi}").strip()
        out.append(Component("app", f"{kind} {name}", cpu, mem, 1 if replicas is None else int(replicas), note=note))
    return out, uses_dapr, gateways


# ---------------------------------------------------------------- (b) the stacks

def req(values, path, what):
    return requests_of(sv.dig(values, path), f"{what} ({path})")


def on(values, path, default):
    value = sv.dig(values, path, default)
    return bool(value)


def kube_prometheus_stack(v):
    src, out = "kube-prometheus-stack", []
    reloader = None
    if on(v, "prometheus.enabled", True) or on(v, "alertmanager.enabled", True):
        reloader = req(v, "prometheusOperator.prometheusConfigReloader.resources", "config-reloader")
    if on(v, "prometheusOperator.enabled", True):
        cpu, mem = req(v, "prometheusOperator.resources", "prometheus-operator")
        out.append(Component(src, "prometheus-operator", cpu, mem))
        if on(v, "prometheusOperator.admissionWebhooks.enabled", True):
            if on(v, "prometheusOperator.admissionWebhooks.deployment.enabled", False):
                cpu, mem = req(v, "prometheusOperator.admissionWebhooks.deployment.resources", "admission webhook")
                out.append(Component(src, "admission-webhook", cpu, mem,
                                     int(sv.dig(v, "prometheusOperator.admissionWebhooks.deployment.replicas", 1))))
            if on(v, "prometheusOperator.admissionWebhooks.patch.enabled", True):
                cpu, mem = req(v, "prometheusOperator.admissionWebhooks.patch.resources", "admission certificate jobs")
                out.append(Component(src, "admission-create/patch Jobs", cpu, mem, transient=True, note="hook"))
    if on(v, "prometheus.enabled", True):
        cpu, mem = req(v, "prometheus.prometheusSpec.resources", "prometheus")
        out.append(Component(src, "prometheus", cpu + reloader[0], mem + reloader[1],
                             int(sv.dig(v, "prometheus.prometheusSpec.replicas", 1)), note="+ config-reloader"))
    if on(v, "alertmanager.enabled", True):
        cpu, mem = req(v, "alertmanager.alertmanagerSpec.resources", "alertmanager")
        out.append(Component(src, "alertmanager", cpu + reloader[0], mem + reloader[1],
                             int(sv.dig(v, "alertmanager.alertmanagerSpec.replicas", 1)), note="+ config-reloader"))
    if on(v, "thanosRuler.enabled", False):
        cpu, mem = req(v, "thanosRuler.thanosRulerSpec.resources", "thanos-ruler")
        out.append(Component(src, "thanos-ruler", cpu, mem))
    if on(v, "grafana.enabled", True):
        cpu, mem = req(v, "grafana.resources", "grafana")
        parts = ["grafana"]
        sidecars = [s for s in ("dashboards", "datasources", "alerts", "notifiers", "plugins")
                    if on(v, f"grafana.sidecar.{s}.enabled", s in ("dashboards", "datasources"))]
        if sidecars:
            scpu, smem = req(v, "grafana.sidecar.resources", "grafana sidecars")
            cpu += scpu * len(sidecars)
            mem += smem * len(sidecars)
            parts += [f"sc-{s}" for s in sidecars]
        if on(v, "grafana.persistence.enabled", False) and on(v, "grafana.initChownData.enabled", True):
            icpu, imem = req(v, "grafana.initChownData.resources", "grafana init-chown-data")
            cpu, mem = max(cpu, icpu), max(mem, imem)
        out.append(Component(src, "grafana", cpu, mem, int(sv.dig(v, "grafana.replicas", 1)),
                             note=" + ".join(parts[1:])))
    if on(v, "kubeStateMetrics.enabled", True):
        cpu, mem = req(v, "kube-state-metrics.resources", "kube-state-metrics")
        if on(v, "kube-state-metrics.kubeRBACProxy.enabled", False):
            pcpu, pmem = req(v, "kube-state-metrics.kubeRBACProxy.resources", "kube-state-metrics rbac proxy")
            cpu, mem = cpu + pcpu, mem + pmem
        out.append(Component(src, "kube-state-metrics", cpu, mem, int(sv.dig(v, "kube-state-metrics.replicas", 1))))
    if on(v, "nodeExporter.enabled", True):
        cpu, mem = req(v, "prometheus-node-exporter.resources", "node-exporter")
        if on(v, "prometheus-node-exporter.kubeRBACProxy.enabled", False):
            pcpu, pmem = req(v, "prometheus-node-exporter.kubeRBACProxy.resources", "node-exporter rbac proxy")
            cpu, mem = cpu + pcpu, mem + pmem
        out.append(Component(src, "node-exporter", cpu, mem, per_node=True, note="DaemonSet"))
    if on(v, "windowsMonitoring.enabled", False):
        raise Missing("windowsMonitoring is on: the Windows exporter is not modelled here")
    return out


def loki(v):
    src, out = "loki", []
    mode = sv.dig(v, "deploymentMode", "Monolithic")
    if mode not in ("Monolithic", "SingleBinary"):
        raise Missing(f"loki deploymentMode {mode}: only the monolithic mode is modelled")
    for target in ("read", "write", "backend", "ingester", "distributor", "querier", "queryFrontend",
                   "queryScheduler", "indexGateway", "compactor", "ruler", "bloomGateway",
                   "bloomPlanner", "bloomBuilder", "patternIngester", "overridesExporter"):
        if int(sv.dig(v, f"{target}.replicas", 0) or 0) > 0:
            raise Missing(f"loki {target}.replicas > 0: not a monolithic install")
    replicas = int(sv.dig(v, "singleBinary.replicas", 0) or 0)
    if replicas:
        cpu, mem = req(v, "singleBinary.resources", "loki")
        note = ""
        if on(v, "sidecar.rules.enabled", True):
            scpu, smem = req(v, "sidecar.resources", "loki rules sidecar")
            cpu, mem, note = cpu + scpu, mem + smem, "+ rules sidecar"
        out.append(Component(src, "loki (monolithic)", cpu, mem, replicas, note=note))
    if on(v, "gateway.enabled", True):
        cpu, mem = req(v, "gateway.resources", "loki gateway")
        out.append(Component(src, "loki-gateway", cpu, mem, int(sv.dig(v, "gateway.replicas", 1))))
    if on(v, "lokiCanary.enabled", True):
        cpu, mem = req(v, "lokiCanary.resources", "loki canary")
        out.append(Component(src, "loki-canary", cpu, mem, per_node=True, note="DaemonSet"))
    for cache in ("chunksCache", "resultsCache"):
        if on(v, f"{cache}.enabled", True):
            raise Missing(f"loki {cache} is on: memcached is not modelled here (turn it off or model it)")
    if on(v, "minio.enabled", False):
        raise Missing("loki minio is on: not modelled here")
    return out


def alloy(v):
    src = "alloy"
    cpu, mem = req(v, "alloy.resources", "alloy")
    note = ""
    if on(v, "configReloader.enabled", True):
        rcpu, rmem = req(v, "configReloader.resources", "alloy config-reloader")
        cpu, mem, note = cpu + rcpu, mem + rmem, "+ config-reloader"
    kind = sv.dig(v, "controller.type", "daemonset")
    if kind == "daemonset":
        return [Component(src, "alloy", cpu, mem, per_node=True, note=("DaemonSet " + note).strip())]
    return [Component(src, "alloy", cpu, mem, int(sv.dig(v, "controller.replicas", 1)), note=note)]


def tempo(v):
    src = "tempo"
    cpu, mem = req(v, "tempo.resources", "tempo")
    note = ""
    if on(v, "tempoQuery.enabled", False):
        qcpu, qmem = req(v, "tempoQuery.resources", "tempo-query")
        cpu, mem, note = cpu + qcpu, mem + qmem, "+ tempo-query"
    return [Component(src, "tempo", cpu, mem, int(sv.dig(v, "replicas", 1)), note=note)]


# The Envoy pods' shutdown-manager container: fixed requests in Envoy Gateway v1.9.0
# (api/v1alpha1/shared_types.go DefaultShutdownManager{CPU,Memory}ResourceRequests), not settable.
SHUTDOWN_MANAGER = (10.0, 32 * 1024 ** 2)


def envoy_gateway(v, gateways):
    src, out = "envoy-gateway", []
    cpu, mem = req(v, "deployment.envoyGateway.resources", "envoy-gateway controller")
    out.append(Component(src, "envoy-gateway controller", cpu, mem, int(sv.dig(v, "deployment.replicas", 1))))
    cpu, mem = req(v, "certgen.job.resources", "envoy-gateway certgen job")
    out.append(Component(src, "certgen Job", cpu, mem, transient=True, note="hook"))
    kube = "config.envoyGateway.envoyProxy.provider.kubernetes"
    if sv.dig(v, kube + ".envoyDaemonSet") is not None:
        raise Missing("envoy-gateway envoyDaemonSet: not modelled here")
    cpu, mem = req(v, kube + ".envoyDeployment.container.resources", "envoy proxy")
    replicas = int(sv.dig(v, kube + ".envoyDeployment.replicas", 1))
    out.append(Component(src, f"envoy proxy ({gateways} Gateway{'s' if gateways != 1 else ''})",
                         cpu + SHUTDOWN_MANAGER[0], mem + SHUTDOWN_MANAGER[1], replicas * gateways,
                         note="+ shutdown-manager 10m/32Mi"))
    return out


def dapr(v):
    src, out = "dapr", []
    ha = on(v, "global.ha.enabled", False)
    ha_n = int(sv.dig(v, "global.ha.replicaCount", 3))
    for sub in ("dapr_operator", "dapr_sentry", "dapr_sidecar_injector"):
        if sub == "dapr_sidecar_injector" and not on(v, f"{sub}.enabled", True):
            continue
        cpu, mem = req(v, f"{sub}.resources", sub)
        out.append(Component(src, sub, cpu, mem, ha_n if ha else int(sv.dig(v, f"{sub}.replicaCount", 1))))
    if on(v, "global.actors.enabled", True):
        cpu, mem = req(v, "dapr_placement.resources", "dapr_placement")
        out.append(Component(src, "dapr_placement", cpu, mem, 3 if (ha or on(v, "dapr_placement.ha", False)) else 1))
    if on(v, "global.scheduler.enabled", True):
        cpu, mem = req(v, "dapr_scheduler.resources", "dapr_scheduler")
        # the chart's StatefulSet has replicas: 3 whatever the HA setting (1.18.3)
        out.append(Component(src, "dapr_scheduler", cpu, mem, 3))
    return out


# ---------------------------------------------------------------- the check

def pack(pods, nodes, node_cpu, node_mem):
    """First-fit decreasing of (name, cpu, mem) onto `nodes` bins; returns unplaced names."""
    free = [[node_cpu, node_mem] for _ in range(nodes)]
    unplaced = []
    for name, cpu, mem in sorted(pods, key=lambda p: (p[1] / node_cpu + p[2] / node_mem), reverse=True):
        for bin_ in free:
            if bin_[0] >= cpu and bin_[1] >= mem:
                bin_[0] -= cpu
                bin_[1] -= mem
                break
        else:
            unplaced.append(name)
    return unplaced, free


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", required=True, help="rendered app chart (helm template output)")
    ap.add_argument("--cloud", default="oke", choices=sv.CLOUDS)
    ap.add_argument("--env", default="dev", choices=sv.ENVS)
    ap.add_argument("--target", default=os.path.join(sv.CHECK, "budget-oke.yaml"))
    ap.add_argument("--nodes", type=int, help="override the target's node count")
    ap.add_argument("--node-cpu", help="override the node CPU (e.g. 1000m)")
    ap.add_argument("--node-memory", help="override the node memory (e.g. 6144Mi)")
    ap.add_argument("--dapr", choices=("auto", "on", "off"), default="auto",
                    help="count the Dapr control plane: auto = when the app's pods have dapr.io/enabled")
    ap.add_argument("--no-tempo", action="store_true", help="leave out the optional Tempo")
    ap.add_argument("--stacks", help="folder of the stacks' values (default deploy/stacks)")
    args = ap.parse_args()
    if args.stacks:
        sv.STACKS = os.path.abspath(args.stacks)

    try:
        target = sv.load_yaml(args.target)
        nodes = args.nodes or int(target["nodes"])
        node_cpu = cpu_m(args.node_cpu or target["node"]["cpu"])
        node_mem = mem_b(args.node_memory or target["node"]["memory"])
        reserved = [(r["name"], cpu_m(r["cpu"]), mem_b(r["memory"])) for r in target["reserved_per_node"]]
    except (OSError, KeyError, TypeError, ValueError) as e:
        print(f"budget.py: bad target {args.target}: {e}", file=sys.stderr)
        sys.exit(2)

    try:
        comps, uses_dapr, gateways = app_components(args.app, args.dapr)
        stacks = {c: sv.merged(c, args.cloud, args.env) for c in sv.CHARTS}
        comps += kube_prometheus_stack(stacks["kube-prometheus-stack"])
        comps += loki(stacks["loki"])
        comps += alloy(stacks["alloy"])
        if not args.no_tempo:
            comps += tempo(stacks["tempo"])
        comps += envoy_gateway(stacks["envoy-gateway"], max(gateways, 1))
        if args.dapr == "on" or (args.dapr == "auto" and uses_dapr):
            comps += dapr(stacks["dapr"])
    except Missing as e:
        print(f"FAIL budget.py: {e}")
        sys.exit(1)
    except (OSError, yaml.YAMLError, KeyError, ValueError) as e:
        print(f"budget.py: bad input: {e}", file=sys.stderr)
        sys.exit(2)

    plural = "s" if nodes != 1 else ""
    print(f"target: {target.get('name', args.target)}; {nodes} node{plural} x {fmt_cpu(node_cpu)} / "
          f"{fmt_mem(node_mem)}; stacks: {args.cloud} + {args.env}; app: {args.app}")
    row = "{:<22} {:<52} {:>12} {:>8} {:>8} {:>8} {:>8}  {}"
    print(row.format("source", "component", "replicas", "cpu/pod", "mem/pod", "cpu", "memory", "note"))
    tot_cpu = tot_mem = 0.0
    steady = [c for c in comps if not c.transient]
    for c in steady:
        n = c.count(nodes)
        tot_cpu += c.cpu * n
        tot_mem += c.mem * n
        print(row.format(c.source, c.name, f"{n}" + (" x node" if c.per_node else ""), fmt_cpu(c.cpu),
                         fmt_mem(c.mem), fmt_cpu(c.cpu * n), fmt_mem(c.mem * n), c.note))
    res_cpu = sum(r[1] for r in reserved)
    res_mem = sum(r[2] for r in reserved)
    for name, cpu, mem in reserved:
        print(row.format("node reserve", name, f"{nodes} x node", fmt_cpu(cpu), fmt_mem(mem),
                         fmt_cpu(cpu * nodes), fmt_mem(mem * nodes), ""))
    cap_cpu, cap_mem = node_cpu * nodes, node_mem * nodes
    alloc_cpu, alloc_mem = (node_cpu - res_cpu) * nodes, (node_mem - res_mem) * nodes
    print()
    print(f"requests of our pods:   cpu {fmt_cpu(tot_cpu):>7}   memory {fmt_mem(tot_mem):>8}")
    print(f"node reservations:      cpu {fmt_cpu(res_cpu * nodes):>7}   memory {fmt_mem(res_mem * nodes):>8}")
    print(f"total:                  cpu {fmt_cpu(tot_cpu + res_cpu * nodes):>7}   memory {fmt_mem(tot_mem + res_mem * nodes):>8}")
    print(f"capacity:               cpu {fmt_cpu(cap_cpu):>7}   memory {fmt_mem(cap_mem):>8}")
    print(f"allocatable for pods:   cpu {fmt_cpu(alloc_cpu):>7}   memory {fmt_mem(alloc_mem):>8}"
          "   (capacity - reservations)")
    head_cpu, head_mem = alloc_cpu - tot_cpu, alloc_mem - tot_mem
    print(f"headroom:               cpu {fmt_cpu(head_cpu):>7}   memory {fmt_mem(head_mem):>8}"
          f"   ({100 * head_cpu / alloc_cpu:.0f} % cpu, {100 * head_mem / alloc_mem:.0f} % memory)"
          if alloc_cpu > 0 and alloc_mem > 0 else "")

    failures = []
    if head_cpu < 0:
        failures.append(f"CPU requests {fmt_cpu(tot_cpu)} exceed allocatable {fmt_cpu(alloc_cpu)}")
    if head_mem < 0:
        failures.append(f"memory requests {fmt_mem(tot_mem)} exceed allocatable {fmt_mem(alloc_mem)}")
    # Per node: DaemonSet pods on every node, then the rest packed.
    ds_cpu = sum(c.cpu for c in steady if c.per_node)
    ds_mem = sum(c.mem for c in steady if c.per_node)
    per_cpu, per_mem = node_cpu - res_cpu - ds_cpu, node_mem - res_mem - ds_mem
    pods = [(c.name, c.cpu, c.mem) for c in steady if not c.per_node for _ in range(c.count(nodes))]
    if not failures:
        unplaced, free = pack(pods, nodes, per_cpu, per_mem)
        if unplaced:
            failures.append("the pods do not pack onto the nodes (first-fit decreasing); left over: "
                            + ", ".join(unplaced))
        else:
            most_cpu = max(f[0] for f in free)
            most_mem = max(f[1] for f in free)
            print(f"packed onto {nodes} nodes; the emptiest node keeps cpu {fmt_cpu(most_cpu)}, memory {fmt_mem(most_mem)}")
            for c in comps:
                if c.transient and (c.cpu > most_cpu or c.mem > most_mem):
                    failures.append(f"run-once pod {c.name} ({fmt_cpu(c.cpu)}, {fmt_mem(c.mem)}) fits on no node")
    transient = [c for c in comps if c.transient]
    if transient:
        print("run-once pods (not summed; each must fit on a node): " + ", ".join(
            f"{c.name} {fmt_cpu(c.cpu)}/{fmt_mem(c.mem)}" for c in transient))
    hpa_max = [c for c in steady if "HPA" in c.note]
    if hpa_max:
        extra_cpu = extra_mem = 0.0
        for c in hpa_max:
            lo, hi = map(int, re.search(r"HPA (\d+)\.\.(\d+)", c.note).groups())
            extra_cpu += c.cpu * (hi - lo)
            extra_mem += c.mem * (hi - lo)
        print(f"at the HPAs' maxReplicas: cpu {fmt_cpu(tot_cpu + extra_cpu)}, memory {fmt_mem(tot_mem + extra_mem)}"
              f" (headroom cpu {fmt_cpu(head_cpu - extra_cpu)}, memory {fmt_mem(head_mem - extra_mem)})")
    if failures:
        for f in failures:
            print(f"FAIL budget.py: {f}")
        sys.exit(1)
    print("budget.py: fits")


if __name__ == "__main__":
    main()
