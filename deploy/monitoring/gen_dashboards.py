#!/usr/bin/env python3
"""Writes grafana/dashboards/{fleet,store}.json (run it after editing the panel lists below).

Kept as code so the two dashboards stay consistent (same datasource, same layout rules); the
JSON files are what Grafana provisions. tests/tests/observability.rs checks that every metric
they name is exported by the binaries.
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, kind, exprs, unit=None, x=0, y=0, w=12, h=8, legend=None):
    targets = []
    for i, e in enumerate(exprs):
        expr, fmt = e if isinstance(e, tuple) else (e, None)
        t = {"refId": chr(65 + i), "datasource": DS, "expr": expr}
        if fmt:
            t["legendFormat"] = fmt
        targets.append(t)
    p = {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    return p


def layout(specs):
    panels, x, y = [], 0, 0
    for i, s in enumerate(specs, start=1):
        w = s.get("w", 12)
        if x + w > 24:
            x, y = 0, y + 8
        panels.append(panel(i, s["title"], s.get("type", "timeseries"), s["exprs"], s.get("unit"), x, y, w))
        x += w
    return panels


def dashboard(uid, title, specs, variables):
    return {
        "uid": uid,
        "title": title,
        "tags": ["edgecart"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            *variables,
        ]},
        "panels": layout(specs),
    }


FLEET = [
    {"title": "Stores connected", "type": "stat", "w": 6, "exprs": ["edgecart_hub_nodes_connected"]},
    {"title": "Stores offline", "type": "stat", "w": 6, "exprs": ["count(edgecart_hub_node_connected == 0) or vector(0)"]},
    {"title": "Card payments waiting offline (all stores)", "type": "stat", "w": 6,
     "exprs": ["sum(edgecart_offline_card_payments) or vector(0)"]},
    {"title": "Oldest charge pending at the hub", "type": "stat", "w": 6, "unit": "s",
     "exprs": ["edgecart_hub_oldest_pending_charge_age_seconds"]},
    {"title": "Offline stores (seconds since last heard)", "type": "table", "w": 12, "unit": "s",
     "exprs": [("edgecart_hub_node_lag_seconds and on (node) (edgecart_hub_node_connected == 0)", "{{node}}")]},
    {"title": "Time since last heard, per store", "unit": "s",
     "exprs": [("edgecart_hub_node_lag_seconds", "{{node}}")]},
    {"title": "Changes not yet through, per store",
     "exprs": [("edgecart_hub_node_pending_changes", "{{node}} {{direction}}")]},
    {"title": "Changes merged per second, per store",
     "exprs": [("sum by (node) (rate(edgecart_hub_changes_merged_total[5m]))", "{{node}}")]},
    {"title": "Payments in flight at the hub, by state",
     "exprs": [("edgecart_hub_payments", "{{state}}")]},
    {"title": "Provider calls per second, by outcome",
     "exprs": [("sum by (operation, outcome) (rate(edgecart_hub_provider_requests_total[5m]))", "{{operation}} {{outcome}}")]},
    {"title": "Provider latency p95", "unit": "s",
     "exprs": [("histogram_quantile(0.95, sum by (le, operation) (rate(edgecart_hub_provider_request_duration_seconds_bucket[5m])))", "{{operation}}")]},
    {"title": "gRPC calls per second, by method and code",
     "exprs": [("sum by (method, code) (rate(edgecart_hub_grpc_requests_total[5m]))", "{{method}} {{code}}")]},
    {"title": "gRPC latency p95, by method", "unit": "s",
     "exprs": [("histogram_quantile(0.95, sum by (le, method) (rate(edgecart_hub_grpc_request_duration_seconds_bucket[5m])))", "{{method}}")]},
    {"title": "Stream errors and refused changes per second",
     "exprs": [("sum by (code) (rate(edgecart_hub_stream_errors_total[5m]))", "stream {{code}}"),
               ("sum by (reason) (rate(edgecart_hub_refused_changes_total[5m]))", "refused {{reason}}")]},
    {"title": "SQLite write latency p99 (hub)", "unit": "s",
     "exprs": [("histogram_quantile(0.99, sum by (le) (rate(edgecart_hub_sqlite_write_duration_seconds_bucket[5m])))", "p99")]},
]

S = '{instance="$instance"}'
STORE = [
    {"title": "Link to the hub", "type": "stat", "w": 6, "exprs": [f"edgecart_sync_connected{S}"]},
    {"title": "Changes waiting for the hub", "type": "stat", "w": 6, "exprs": [f"edgecart_sync_unacked_changes{S}"]},
    {"title": "Oldest unacknowledged change", "type": "stat", "w": 6, "unit": "s",
     "exprs": [f"edgecart_sync_oldest_unacked_age_seconds{S}"]},
    {"title": "Reconnects (1h)", "type": "stat", "w": 6, "exprs": [f"increase(edgecart_sync_reconnects_total{S}[1h])"]},
    {"title": "Offline card payments waiting", "w": 12,
     "exprs": [(f"edgecart_offline_card_payments{S}", "count"),
               (f"edgecart_offline_card_payments_amount{S}", "amount (minor units)")]},
    {"title": "Oldest offline card payment", "unit": "s", "w": 12,
     "exprs": [(f"edgecart_offline_card_payments_oldest_age_seconds{S}", "age")]},
    {"title": "Sync messages per second", "exprs": [(f"rate(edgecart_sync_messages_total{S}[5m])", "{{{{direction}}}}")]},
    {"title": "Sync bytes per second", "unit": "Bps",
     "exprs": [(f"rate(edgecart_sync_bytes_total{S}[5m])", "{{{{direction}}}}")]},
    {"title": "Orders per second, by outcome",
     "exprs": [(f"sum by (outcome) (rate(edgecart_orders_total{S}[5m]))", "{{{{outcome}}}}")]},
    {"title": "Payments per second, by method and outcome",
     "exprs": [(f"sum by (method, outcome) (rate(edgecart_payments_total{S}[5m]))", "{{{{method}}}} {{{{outcome}}}}")]},
    {"title": "Top-ups per second, by outcome",
     "exprs": [(f"sum by (outcome) (rate(edgecart_top_ups_total{S}[5m]))", "{{{{outcome}}}}")]},
    {"title": "Top-up latency p95", "unit": "s",
     "exprs": [(f"histogram_quantile(0.95, sum by (le) (rate(edgecart_top_up_duration_seconds_bucket{S}[5m])))", "p95")]},
    {"title": "Notifications per second",
     "exprs": [(f"sum(rate(edgecart_notifications_queued_total{S}[5m]))", "queued"),
               (f"sum(rate(edgecart_notifications_delivered_total{S}[5m]))", "delivered"),
               (f"sum(rate(edgecart_notifications_dead_lettered_total{S}[5m]))", "dead-lettered")]},
    {"title": "Notifications waiting and dead",
     "exprs": [(f"edgecart_notifications_waiting{S}", "waiting"),
               (f"edgecart_notifications_dead_letters{S}", "dead letters")]},
    {"title": "HTTP requests per second, by route",
     "exprs": [(f"sum by (method, route) (rate(edgecart_http_requests_total{S}[5m]))", "{{{{method}}}} {{{{route}}}}")]},
    {"title": "HTTP latency p95, by route", "unit": "s",
     "exprs": [(f"histogram_quantile(0.95, sum by (le, route) (rate(edgecart_http_request_duration_seconds_bucket{S}[5m])))", "{{{{route}}}}")]},
    {"title": "HTTP 5xx ratio", "unit": "percentunit",
     "exprs": [(f'sum(rate(edgecart_http_requests_total{{instance="$instance", status=~"5.."}}[5m])) / sum(rate(edgecart_http_requests_total{S}[5m]))', "5xx")]},
]

STORE_VARS = [{
    "name": "instance", "type": "query", "label": "Store",
    "datasource": DS, "query": {"query": "label_values(edgecart_sync_connected, instance)", "refId": "instance"},
    "definition": "label_values(edgecart_sync_connected, instance)", "refresh": 2,
}]

here = pathlib.Path(__file__).parent / "grafana" / "dashboards"
for name, d in {
    "fleet.json": dashboard("edgecart-fleet", "edgecart fleet", FLEET, []),
    "store.json": dashboard("edgecart-store", "edgecart store", STORE, STORE_VARS),
}.items():
    (here / name).write_text(json.dumps(d, indent=2) + "\n")
