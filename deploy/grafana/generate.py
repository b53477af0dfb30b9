#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ from the panel lists below.

    python3 deploy/grafana/generate.py

Every panel is a time series over the Prometheus datasource named `Prometheus`
(provisioning/datasources/prometheus.yml). crates/strata/tests/deploy.rs checks that
every metric and recording rule a panel uses exists.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).parent
DS = {"type": "prometheus", "uid": "prometheus"}

RUN = '{run=~"$run"}'
RUN_INTENDED = '{from="intended",run=~"$run"}'

DASHBOARDS = {
    "strata-cache": ("Strata: cache", [
        ("Hit ratio by namespace", "percentunit", ["strata:cache_hit_ratio:rate5m"], "{{instance}} {{namespace}}"),
        ("Lookups/s by namespace and tier", "ops", [
            "sum by (namespace, tier) (rate(strata_cache_hits_total[5m]) + rate(strata_cache_misses_total[5m]))"], "{{namespace}} {{tier}}"),
        ("p99 latency by operation", "s", ["strata:cache_operation_duration_seconds:p99_5m"], "{{instance}} {{op}} {{tier}}"),
        ("Memory tier: used and limit", "bytes", [
            "sum by (instance) (strata_cache_size_bytes{tier=\"l1\"})",
            "sum by (instance) (strata_cache_capacity_bytes{tier=\"l1\"})"], "{{instance}}"),
        ("Entries by namespace", "short", ["sum by (namespace) (strata_cache_entries)"], "{{namespace}}"),
        ("Evictions and expirations/s", "ops", [
            "sum by (namespace) (rate(strata_cache_evictions_total[5m]))",
            "sum by (namespace) (rate(strata_cache_expirations_total[5m]))"], "{{namespace}}"),
        ("Invalidations/s", "ops", ["sum by (namespace) (rate(strata_cache_invalidations_total[5m]))"], "{{namespace}}"),
        ("Tier up", "short", ["strata_tier_up"], "{{instance}} {{tier}}"),
    ]),
    "strata-http": ("Strata: HTTP proxy", [
        ("Requests/s by cache status", "reqps", ["sum by (route, cache) (rate(strata_http_requests_total[5m]))"], "{{route}} {{cache}}"),
        ("Hit ratio by route", "percentunit", ["strata:http_hit_ratio:rate5m"], "{{instance}} {{route}}"),
        ("p99 response time by route", "s", ["strata:http_request_duration_seconds:p99_5m"], "{{instance}} {{route}}"),
        ("p99 origin time by route", "s", [
            "histogram_quantile(0.99, sum by (route, le) (rate(strata_http_origin_duration_seconds_bucket[5m])))"], "{{route}}"),
        ("Coalesced waits/s", "ops", ["sum by (route) (rate(strata_http_coalesced_total[5m]))"], "{{route}}"),
        ("Responses stored/s", "ops", ["sum by (route) (rate(strata_http_stored_total[5m]))"], "{{route}}"),
        ("Responses not stored/s, by reason", "ops", ["sum by (route, reason) (rate(strata_http_not_stored_total[5m]))"], "{{route}} {{reason}}"),
    ]),
    "strata-postgres": ("Strata: PostgreSQL", [
        ("Queries/s by kind", "qps", ["strata:pg_queries:rate5m"], "{{instance}} {{command}}"),
        ("p99 query time by kind", "s", ["strata:pg_query_duration_seconds:p99_5m"], "{{instance}} {{command}}"),
        ("Errors/s by kind", "ops", ["sum by (command) (rate(strata_pg_query_errors_total[5m]))"], "{{command}}"),
        ("Slow queries/s", "ops", ["sum by (instance) (rate(strata_pg_slow_queries_total[5m]))"], "{{instance}}"),
        ("Sessions: clients, servers, limit", "short", [
            "strata_pg_client_connections", "strata_pg_server_connections", "strata_pg_max_client_connections"], "{{instance}} {{__name__}}"),
        ("N+1 patterns found", "short", ["strata_pg_n_plus_one_findings"], "{{instance}}"),
        ("Refused, protocol errors, connect errors /s", "ops", [
            "rate(strata_pg_connections_refused_total[5m])",
            "rate(strata_pg_protocol_errors_total[5m])",
            "rate(strata_pg_server_connect_errors_total[5m])"], "{{instance}} {{__name__}}"),
    ]),
    "strata-process": ("Strata: process and API", [
        ("CPU (cores)", "short", ["rate(process_cpu_seconds_total[5m])"], "{{instance}}"),
        ("Resident memory", "bytes", ["process_resident_memory_bytes"], "{{instance}}"),
        ("Open file descriptors", "short", ["process_open_fds", "process_max_fds"], "{{instance}} {{__name__}}"),
        ("API requests/s by route", "reqps", ["strata:api_requests:rate5m"], "{{instance}} {{route}}"),
        ("API p99 by route", "s", ["strata:api_request_duration_seconds:p99_5m"], "{{instance}} {{route}}"),
        ("API connections and requests in flight", "short", ["strata_api_connections", "strata_api_requests_in_flight"], "{{instance}} {{__name__}}"),
    ]),
    # Fed by `strata load-test --metrics-listen` (job strata-loadtest, 5 s scrapes).
    "strata-loadtest": ("Strata: load tests", [
        ("Operations/s", "ops", [f"sum by (run) (rate(strata_loadtest_operations_total{RUN}[30s]))"], "{{run}}"),
        ("Latency from the intended start (coordinated omission corrected)", "s", [
            f"histogram_quantile(0.5, sum by (run, le) (rate(strata_loadtest_latency_seconds_bucket{RUN_INTENDED}[30s])))",
            f"histogram_quantile(0.99, sum by (run, le) (rate(strata_loadtest_latency_seconds_bucket{RUN_INTENDED}[30s])))"], "{{run}}"),
        ("p99 from the send vs from the intended start", "s", [
            f"histogram_quantile(0.99, sum by (run, from, le) (rate(strata_loadtest_latency_seconds_bucket{RUN}[30s])))"], "{{run}} from {{from}}"),
        ("Error ratio", "percentunit", [
            f"sum by (run) (rate(strata_loadtest_errors_total{RUN}[30s])) / sum by (run) (rate(strata_loadtest_operations_total{RUN}[30s]))"], "{{run}}"),
        ("Errors/s by kind", "ops", [f"sum by (run, kind) (rate(strata_loadtest_errors_total{RUN}[30s]))"], "{{run}} {{kind}}"),
        ("Hit ratio reported by the target", "percentunit", [
            f"sum by (run) (rate(strata_loadtest_cache_hits_total{RUN}[30s])) / (sum by (run) (rate(strata_loadtest_cache_hits_total{RUN}[30s])) + sum by (run) (rate(strata_loadtest_cache_misses_total{RUN}[30s])))"], "{{run}}"),
        ("Load: users (closed loop) and target arrivals/s (open loop)", "short", [
            f"strata_loadtest_users{RUN}", f"strata_loadtest_target_rate{RUN}"], "{{run}} {{__name__}}"),
        ("Late and dropped starts/s (open loop)", "ops", [
            f"rate(strata_loadtest_late_starts_total{RUN}[30s])", f"rate(strata_loadtest_dropped_starts_total{RUN}[30s])"], "{{run}} {{__name__}}"),
    ]),
}

# Dashboards with a `run` selector (load tests are told apart by their run name).
VARIABLES = {
    "strata-loadtest": [{
        "name": "run",
        "label": "run",
        "type": "query",
        "datasource": DS,
        "query": {"query": "label_values(strata_loadtest_operations_total, run)", "refId": "run"},
        "definition": "label_values(strata_loadtest_operations_total, run)",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }],
}


def panel(i, title, unit, exprs, legend):
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + j), "datasource": DS, "expr": e, "legendFormat": legend}
            for j, e in enumerate(exprs)
        ],
    }


for uid, (title, panels) in DASHBOARDS.items():
    dash = {
        "uid": uid,
        "title": title,
        "tags": ["strata"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s" if uid in VARIABLES else "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": VARIABLES.get(uid, [])},
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }
    out = HERE / "dashboards" / f"{uid}.json"
    out.write_text(json.dumps(dash, indent=2) + "\n")
    print(out)
