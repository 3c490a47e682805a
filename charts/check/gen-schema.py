#!/usr/bin/env python3
"""Generates charts/todo/values.schema.json from charts/todo/values.yaml.

Every object of values.yaml becomes an object schema with its keys as properties and
additionalProperties: false, typed after its default; OVERRIDES below add enums, ranges,
free-form maps and list item types. So every key of values.yaml is in the schema by
construction, and an unknown key fails `helm lint`/`helm template`.

  gen-schema.py          write the schema
  gen-schema.py --check  exit 1 when the committed schema differs (CI drift check)
"""
import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent / "todo"
SERVICES = ["api", "recurring", "notification", "sync", "audit"]

STR = {"type": "string"}
INT = {"type": "integer"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
MAP_STR = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
FREE = {"type": "object"}
SELECTOR = {"type": ["object", "null"], "properties": {
    "matchLabels": {"type": "object", "additionalProperties": STR},
    "matchExpressions": {"type": "array", "items": FREE}}, "additionalProperties": False}
QUANTITY = {"type": ["string", "integer", "number"]}
RESOURCES = {
    "type": "object", "required": ["requests", "limits"], "additionalProperties": False,
    "properties": {k: {"type": "object", "required": ["cpu", "memory"], "additionalProperties": False,
                       "properties": {"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}}
                   for k in ("requests", "limits")}}
DURATION = {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"}
GW_DURATION = {"type": "string", "pattern": "^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
COMPONENT = {
    "type": "object", "required": ["name", "type", "metadata"], "additionalProperties": False,
    "properties": {
        "name": STR, "type": STR, "version": STR, "initTimeout": STR,
        "scopes": {"type": "array", "items": STR},
        "metadata": {"type": "array", "items": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": STR, "value": {"type": ["string", "number", "boolean"]},
                           "secretKeyRef": {"type": "object", "required": ["key"], "additionalProperties": False,
                                            "properties": {"name": STR, "key": STR}}}}}}}
SUBSCRIPTION = {
    "type": "object", "required": ["name", "pubsubname", "topic", "route"], "additionalProperties": False,
    "properties": {"name": STR, "pubsubname": STR, "topic": STR, "route": STR, "deadLetterTopic": STR,
                   "scopes": {"type": "array", "items": STR}}}

OVERRIDES = {
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "image.tag": {"type": "string", "not": {"const": "latest"}},
    "imagePullSecrets": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                    "properties": {"name": STR}, "additionalProperties": False}},
    "podLabels": {"type": "object", "additionalProperties": STR},
    "podAnnotations": {"type": "object", "additionalProperties": STR},
    "nodeSelector": {"type": "object", "additionalProperties": STR},
    "tolerations": {"type": "array", "items": FREE},
    "affinity": FREE,
    "terminationGracePeriodSeconds": {"type": "integer", "minimum": 1},
    "bus": {"enum": ["kafka", "dapr"]},
    "kafka.securityProtocol": {"enum": ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]},
    "kafka.saslMechanism": {"enum": ["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]},
    "kafka.partitions": {"type": "integer", "minimum": 1, "maximum": 1000},
    "kafka.replication": {"type": "integer", "minimum": 1, "maximum": 10},
    "kafka.sessionTimeoutMs": {"type": "integer", "minimum": 1000, "maximum": 300000},
    "config.logFormat": {"enum": ["json", "pretty"]},
    "config.requestTimeoutMs": {"type": "integer", "minimum": 10, "maximum": 3600000},
    "config.shutdownTimeoutSecs": {"type": "integer", "minimum": 1, "maximum": 300},
    "config.pgPoolSize": {"type": "integer", "minimum": 1, "maximum": 1024},
    "config.extra": MAP_STR,
    "otel.protocol": {"enum": ["http/protobuf", "grpc"]},
    "otel.sampler": {"enum": ["always_on", "always_off", "traceidratio", "parentbased_always_on",
                              "parentbased_always_off", "parentbased_traceidratio"]},
    "otel.samplerArg": {"type": "string", "pattern": "^(0(\\.[0-9]+)?|1(\\.0+)?)$"},
    "gateway.listeners.http.port": PORT,
    "gateway.listeners.https.port": PORT,
    "gateway.parentRefs": {"type": "array", "items": {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": STR, "namespace": STR, "sectionName": STR, "port": PORT,
                       "group": STR, "kind": STR}}},
    "gateway.hostnames": {"type": "array", "items": STR},
    "gateway.websocketTimeout": GW_DURATION,
    "gateway.requestTimeout": {"anyOf": [{"const": ""}, GW_DURATION]},
    "gateway.infrastructure.annotations": {"type": "object", "additionalProperties": STR},
    "gateway.infrastructure.parametersRef": {"type": ["object", "null"], "required": ["group", "kind", "name"],
                                             "additionalProperties": False,
                                             "properties": {"group": STR, "kind": STR, "name": STR}},
    "gateway.annotations": {"type": "object", "additionalProperties": STR},
    "ingress.annotations": {"type": "object", "additionalProperties": STR},
    "dapr.appPort": PORT,
    "dapr.metricsPort": PORT,
    "dapr.logLevel": {"enum": ["debug", "info", "warn", "error"]},
    "dapr.components": {"type": "array", "items": COMPONENT},
    "dapr.subscriptions": {"type": "array", "items": SUBSCRIPTION},
    "monitoring.labels": {"type": "object", "additionalProperties": STR},
    "monitoring.serviceMonitor.interval": DURATION,
    "monitoring.serviceMonitor.scrapeTimeout": DURATION,
    "monitoring.podMonitor.interval": DURATION,
    "networkPolicy.extraEgress": {"type": "array", "items": FREE},
    "migrations.hookEvents": {"type": "array", "minItems": 1, "uniqueItems": True,
                              "items": {"enum": ["pre-install", "post-install", "pre-upgrade", "post-upgrade"]}},
    "migrations.resources": RESOURCES,
    "postgresql.resources": RESOURCES,
    "serviceAccount.annotations": {"type": "object", "additionalProperties": STR},
    "migrations.serviceAccountAnnotations": {"type": "object", "additionalProperties": STR},
    "cloudSqlProxy.image.tag": {"type": "string", "minLength": 1, "not": {"const": "latest"}},
    "cloudSqlProxy.instanceConnectionName": {"type": "string", "pattern": "^$|^[a-z0-9.:-]+:[a-z0-9-]+:[a-z0-9-]+$"},
    "cloudSqlProxy.port": PORT,
    "cloudSqlProxy.healthPort": PORT,
    "cloudSqlProxy.extraArgs": {"type": "array", "items": {"type": "string", "pattern": "^--"}},
    "cloudSqlProxy.resources": RESOURCES,
    "redpanda.resources": RESOURCES,
}
for s in SERVICES:
    OVERRIDES[f"services.{s}.resources"] = RESOURCES
    OVERRIDES[f"services.{s}.env"] = MAP_STR
    OVERRIDES[f"services.{s}.serviceAccountAnnotations"] = {"type": "object", "additionalProperties": STR}
    OVERRIDES[f"services.{s}.replicas"] = {"type": "integer", "minimum": 0}
for s in ("api", "sync"):
    OVERRIDES[f"autoscaling.{s}.minReplicas"] = {"type": "integer", "minimum": 1}
    OVERRIDES[f"autoscaling.{s}.maxReplicas"] = {"type": "integer", "minimum": 1}
    OVERRIDES[f"autoscaling.{s}.targetCPUUtilizationPercentage"] = {"type": "integer", "minimum": 1, "maximum": 100}
    OVERRIDES[f"autoscaling.{s}.customMetric.averageValue"] = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[kMG]?$|^[0-9]+m$"}


def peer_override(path, value):
    """networkPolicy peers: selectors are label selectors (or null), cidrs strings, ports ports."""
    leaf = path.rsplit(".", 1)[-1]
    if path.startswith("networkPolicy.") and leaf in ("namespaceSelector", "podSelector"):
        return SELECTOR
    if path.startswith("networkPolicy.") and leaf == "cidrs":
        return {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-fA-F:.]+/[0-9]{1,3}$"}}
    if path.startswith("networkPolicy.") and leaf == "ports":
        return {"type": "array", "items": PORT}
    return None


def schema_for(value, path):
    if path in OVERRIDES:
        o = dict(OVERRIDES[path])
        if "enum" in o and "type" not in o:
            o["type"] = type_name(value)
        return o
    p = peer_override(path, value)
    if p is not None:
        return p
    if isinstance(value, dict):
        return {"type": "object", "additionalProperties": False,
                "properties": {k: schema_for(v, f"{path}.{k}" if path else k) for k, v in value.items()}}
    if isinstance(value, list):
        if value and not all(isinstance(x, type(value[0])) for x in value):
            raise SystemExit(f"{path}: a list of mixed types needs an override")
        return {"type": "array", "items": schema_for(value[0], path + "[]") if value else {}}
    if value is None:
        raise SystemExit(f"{path}: a null default needs an override")
    return {"type": type_name(value)}


def type_name(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise SystemExit(f"unexpected default {value!r}")


def main():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    unused = [k for k in OVERRIDES if not has_path(values, k)]
    if unused:
        raise SystemExit(f"overrides for keys not in values.yaml: {unused}")
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              "title": "todo chart values (generated by charts/check/gen-schema.py; do not edit)"}
    schema.update(schema_for(values, ""))
    text = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    out = CHART / "values.schema.json"
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date: run charts/check/gen-schema.py", file=sys.stderr)
            sys.exit(1)
        print(f"{out.name} matches values.yaml")
        return
    out.write_text(text)
    print(f"wrote {out}")


def has_path(values, dotted):
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


if __name__ == "__main__":
    main()
