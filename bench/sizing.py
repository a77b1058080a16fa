#!/usr/bin/env python3
"""Prints the README's sizing guide (Markdown) from measured figures.

    bench/sizing.py RESULTS.json DB_COST.json [--logins-per-minute N] [--refreshes-per-minute N]
                    [--sidecars N] [--failed-logins-per-minute N] [--feed-entries N]

RESULTS.json is a full `bench/run` (throughput per scenario, CPU per request, per-core
limits); DB_COST.json is `bench/db_cost.py --json` (round trips, rows, WAL and PostgreSQL
CPU per operation, bytes per row). The defaults the example depends on (intervals, TTLs,
retention, pool sizes, CPU limits) are read from the charts and the code, so re-running
this after a new bench run, or after a default changed, is how the guide is updated.
"""

import argparse
import json
import math
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Share of a replica's CPU the example plans to use, and replicas kept spare (one may be
# drained or rescheduled at any time: the charts' PodDisruptionBudget allows one).
TARGET_UTILISATION = 0.6
SPARE_REPLICAS = 1


def source(path):
    return open(os.path.join(ROOT, path)).read()


def find(pattern, text, what):
    match = re.search(pattern, text, re.M)
    if not match:
        raise SystemExit(f"sizing: {what} not found")
    return match.group(1)


def defaults():
    values = source("charts/iam/values.yaml")
    api = values[values.index("\napi:"):values.index("\njwksServer:")]
    jwks = values[values.index("\njwksServer:"):values.index("\ntopologySpread:")]
    sidecar = source("charts/iam-sidecar/templates/_sidecar.tpl")
    return {
        "access_token_ttl": int(find(r"^  accessTokenTtl: (\d+)", values, "tokens.accessTokenTtl")),
        "refresh_token_ttl": int(find(r"^  refreshTokenTtl: (\d+)", values, "tokens.refreshTokenTtl")),
        "leeway": int(find(r"^  leeway: (\d+)", values, "tokens.leeway")),
        "jwks_max_age": int(find(r"^  maxAge: (\d+)", values, "jwks.maxAge")),
        "audit_retention_days": int(find(r"^  auditRetentionDays: (\d+)", api, "api.auditRetentionDays")),
        "api_pool": int(find(r"^  poolSize: (\d+)", api, "api.poolSize")),
        "api_cpu_limit": float(find(r'limits: \{cpu: "?([\d.]+)"?', api, "api CPU limit")),
        "api_max_replicas": int(find(r"^    maxReplicas: (\d+)", api, "api.autoscaling.maxReplicas")),
        "jwks_workers": int(find(r"^  workerCount: (\d+)", jwks, "jwksServer.workerCount")),
        "jwks_cpu_limit": float(find(r'limits: \{cpu: "?([\d.]+)"?', jwks, "jwks CPU limit")),
        "jwks_max_replicas": int(find(r"^    maxReplicas: (\d+)", jwks, "jwksServer.autoscaling.maxReplicas")),
        "sidecar_jwks_interval": int(find(r"jwksRefreshInterval \| default (\d+)", sidecar, "sidecar jwksRefreshInterval")),
        "sidecar_feed_interval": int(find(r"revocationRefreshInterval \| default (\d+)", sidecar,
                                          "sidecar revocationRefreshInterval")),
        "expired_refresh_retention_days": int(find(r"EXPIRED_TOKEN_RETENTION: chrono::Duration = chrono::Duration::days\((\d+)\)",
                                                   source("iam-api/src/domain/pruning.rs"), "EXPIRED_TOKEN_RETENTION")),
        "login_failure_forget_seconds": int(find(r"FORGET_AFTER_SECONDS: i64 = ([\d_]+);",
                                                 source("iam-api/src/domain/throttle.rs"), "FORGET_AFTER_SECONDS").replace("_", "")),
    }


def gib(n):
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results")
    parser.add_argument("db_cost")
    parser.add_argument("--logins-per-minute", type=float, default=2000)
    parser.add_argument("--refreshes-per-minute", type=float, default=50000)
    parser.add_argument("--sidecars", type=int, default=20000)
    parser.add_argument("--failed-logins-per-minute", type=float, default=100,
                        help="an assumption (5%% of the logins by default), each from a new email")
    parser.add_argument("--feed-entries", type=int, default=1000,
                        help="revocations in the feed (those of the last access-token lifetime)")
    args = parser.parse_args()
    run = json.load(open(args.results))
    cost = json.load(open(args.db_cost))
    d = defaults()
    rows = {row["name"]: row for row in run["scenarios"]}
    ops = {row["operation"]: row for row in cost["operations"]}
    cores = run["cores"]
    limits = run["limits"]
    results_name = os.path.relpath(os.path.abspath(args.results), ROOT)
    cost_name = os.path.relpath(os.path.abspath(args.db_cost), ROOT)
    out = []
    p = out.append

    p(f"Throughput from `{results_name}` (`bench/run`, {run['duration_s']} s per scenario, "
      f"{run['connections']} connections, {run['logging']}, iam-api pool {run['api_pool_size']}, "
      f"sidecar WORKER_COUNT {run['sidecar_workers']}); PostgreSQL cost from `{cost_name}` "
      f"(`bench/db_cost.py --json {cost_name}`). Printed by `bench/sizing.py {results_name} {cost_name}`.")
    p("")
    p(f"*Per core* is requests/s divided by the machine's {cores} cores, which also run wrk and "
      "PostgreSQL: a floor for what a core given to the service alone does. The limit column "
      "is what one core can do at most (the same run's argon2id and RS256 measurements, or "
      "1 s over the process's CPU time per request).")
    p("")
    p("| operation | measured/s | per core | limit per core |")
    p("|---|---:|---:|---:|")
    per_core = {}

    def line(label, name, limit):
        row = rows.get(name)
        if not row:
            return
        per_core[name] = row["requests_per_second"] / cores
        p(f"| {label} | {row['requests_per_second']:,.0f} | {per_core[name]:,.0f} | {limit} |")

    argon = limits["argon2id"]["verifies_per_second_per_core"]
    signs = limits["signs_per_second_per_core"]
    line("login (password grant)", "login", f"{argon:,.0f} (argon2id verifies)")
    line("refresh", "refresh", f"{signs:,.0f} (RS256 signs)")
    line("client-credentials token", "client-credentials", f"{signs:,.0f} (RS256 signs)")
    line("`GET /me`", "me", "-")
    jwks_cpu = rows.get("jwks", {}).get("cpu_us_per_request")
    line("JWKS (iam-jwks)", "jwks", f"{1e6 / jwks_cpu:,.0f} (1 s / {jwks_cpu} µs of CPU)" if jwks_cpu else "-")
    sidecar = rows.get("sidecar")
    if sidecar:
        p(f"| sidecar, one token (one sidecar, WORKER_COUNT {run['sidecar_workers']}) | "
          f"{sidecar['requests_per_second']:,.0f} | - | {1e6 / sidecar['cpu_us_per_request']:,.0f} "
          f"(1 s / {sidecar['cpu_us_per_request']} µs of CPU) |")
    many = rows.get("sidecar-many-tokens")
    if many:
        p(f"| sidecar, many distinct tokens in turn (twice its verified-token memory: a signature check every other request) | {many['requests_per_second']:,.0f} | - | "
          f"{1e6 / many['cpu_us_per_request']:,.0f} (1 s / {many['cpu_us_per_request']} µs of CPU) |")
    for name in ("replicas-login", "replicas-refresh"):
        row = rows.get(name)
        if row:
            p(f"| {name.replace('replicas-', '')} through HAProxy to 2 replicas (same cores) | "
              f"{row['requests_per_second']:,.0f} | {row['requests_per_second'] / cores:,.0f} | - |")
    p("")
    p("PostgreSQL per operation (round trips include BEGIN and COMMIT; rows written are "
      "inserted + updated + deleted; CPU is every PostgreSQL process's, at "
      f"{cost['concurrency']} concurrent clients):")
    p("")
    p("| operation | round trips | transactions | rows written | of which | WAL bytes | PostgreSQL CPU µs |")
    p("|---|---:|---:|---:|---|---:|---:|")
    for name, row in ops.items():
        written = row["rows_inserted"] + row["rows_updated"] + row["rows_deleted"]
        detail = ", ".join(f"{t} " + "/".join(f"{k[0]}{v:g}" for k, v in c.items() if v)
                           for t, c in sorted(row["tables"].items()))
        p(f"| {name} | {row['round_trips']:g} | {row['transactions']:g} | {written:g} | {detail} "
          f"| {row['wal_bytes']:,} | {row['postgres_cpu_us']:,} |")
    j = cost["jwks"]
    p(f"| JWKS, revocation feed | 0 | 0 | 0 | iam-jwks reads on its own clock: "
      f"{j['idle_round_trips_per_second']} round trips/s per replica, whatever the request rate | 0 | - |")
    p("")
    p("(i/u/d: inserted/updated/deleted per operation.) Bytes per row as stored (heap and "
      "indexes, after VACUUM): " + ", ".join(
          f"{t} {s['total_bytes_per_row']}" for t, s in cost["row_sizes"].items()) + ".")

    # The worked example.
    logins = args.logins_per_minute / 60
    refreshes = args.refreshes_per_minute / 60
    failed = args.failed_logins_per_minute / 60
    api_cores = logins / per_core["login"] + refreshes / per_core["refresh"]
    api_replicas = max(2, math.ceil(api_cores / (d["api_cpu_limit"] * TARGET_UTILISATION)) + SPARE_REPLICAS)
    jwks_interval = min(d["sidecar_jwks_interval"], d["jwks_max_age"])
    jwks_rps = args.sidecars / jwks_interval
    feed_rps = args.sidecars / d["sidecar_feed_interval"]
    jwks_cores = (jwks_rps + feed_rps) * jwks_cpu / 1e6
    jwks_replicas = max(2, math.ceil(jwks_cores / (d["jwks_cpu_limit"] * TARGET_UTILISATION)) + SPARE_REPLICAS)
    feed_bytes_per_entry = j["revocation_feed_bytes"] / max(1, j["revocation_feed_entries"])
    feed_bytes = args.feed_entries * feed_bytes_per_entry
    rates = {"login": logins, "refresh": refreshes, "login-failed": failed}
    per_second = {key: sum(rate * ops[name][key] for name, rate in rates.items())
                  for key in ("round_trips", "transactions", "wal_bytes", "postgres_cpu_us")}
    written = sum(rate * (ops[name]["rows_inserted"] + ops[name]["rows_updated"] + ops[name]["rows_deleted"])
                  for name, rate in rates.items())
    jwks_pool = 2 * d["jwks_workers"]
    connections = api_replicas * d["api_pool"] + jwks_replicas * jwks_pool
    max_connections = d["api_max_replicas"] * d["api_pool"] + d["jwks_max_replicas"] * jwks_pool

    def kept_per_second(table):
        """Rows the operations leave in `table` per second (inserted less deleted: a
        successful login deletes the throttle row it made), before any pruning."""
        return sum(rate * (ops[name]["tables"].get(table, {}).get("inserted", 0)
                           - ops[name]["tables"].get(table, {}).get("deleted", 0))
                   for name, rate in rates.items())

    day = 86400
    refresh_kept = d["refresh_token_ttl"] + d["expired_refresh_retention_days"] * day
    tables = [
        ("refresh_tokens", kept_per_second("refresh_tokens"), refresh_kept,
         f"REFRESH_TOKEN_TTL ({d['refresh_token_ttl'] // day} d) + {d['expired_refresh_retention_days']} d "
         "after expiry (the pruner, every 10 min; used tokens stay for replay detection)"),
        ("audit_events", kept_per_second("audit_events"), d["audit_retention_days"] * day,
         f"AUDIT_RETENTION_DAYS ({d['audit_retention_days']})"),
        ("login_failures", kept_per_second("login_failures"), d["login_failure_forget_seconds"],
         f"{d['login_failure_forget_seconds'] // 3600} h after an email's last failure; a success deletes it"),
    ]
    p("")
    p(f"**Worked example**: {args.logins_per_minute:,.0f} logins/min ({logins:,.1f}/s), "
      f"{args.refreshes_per_minute:,.0f} refreshes/min ({refreshes:,.0f}/s), "
      f"{args.failed_logins_per_minute:,.0f} failed logins/min from new emails (an assumption), "
      f"{args.sidecars:,} sidecars at the chart's intervals. Replicas are planned at "
      f"{TARGET_UTILISATION:.0%} of their CPU limit with {SPARE_REPLICAS} spare.")
    p("")
    p(f"- **iam-api**: {logins:,.1f} / {per_core['login']:,.0f} + {refreshes:,.0f} / "
      f"{per_core['refresh']:,.0f} = **{api_cores:.2f} cores**; at the chart's "
      f"{d['api_cpu_limit']:g} CPUs per replica: **{api_replicas} replicas**.")
    p(f"- **iam-jwks**: each sidecar fetches the JWKS every {jwks_interval} s "
      f"(min of its JWKS_REFRESH_INTERVAL, {d['sidecar_jwks_interval']} s, and the JWKS max-age, "
      f"{d['jwks_max_age']} s) and polls the revocation feed every {d['sidecar_feed_interval']} s "
      f"(REVOCATION_REFRESH_INTERVAL): {jwks_rps:,.0f} + {feed_rps:,.0f} = "
      f"**{jwks_rps + feed_rps:,.0f} requests/s**, at {jwks_cpu} µs each (a JWKS request's CPU; a feed "
      f"poll answered 304 was not measured apart) **{jwks_cores:.2f} cores**: the chart's "
      f"{d['jwks_cpu_limit']:g} CPU per replica gives **{jwks_replicas} replicas** (two at least, for "
      f"availability). Bandwidth is the larger cost: each change to the feed (a sign-out, a "
      f"disabled account, a revoked access token) makes every sidecar download all of it once "
      f"within {d['sidecar_feed_interval']} s. The feed measured {feed_bytes_per_entry:,.0f} bytes "
      f"per entry; at {args.feed_entries:,} entries that is {feed_bytes / 1024:,.0f} KiB × "
      f"{args.sidecars:,} = **{gib(feed_bytes * args.sidecars)} per change**, "
      f"{gib(feed_bytes * args.sidecars / d['sidecar_feed_interval'])}/s while changes come more "
      "often than every poll interval. Database: "
      f"{j['idle_round_trips_per_second']} round trips/s per replica, whatever the sidecar count.")
    p(f"- **PostgreSQL load**: {per_second['round_trips']:,.0f} round trips/s, "
      f"{per_second['transactions']:,.0f} transactions/s, {written:,.0f} rows written/s, "
      f"WAL {per_second['wal_bytes'] / 2**20:,.1f} MiB/s ({gib(per_second['wal_bytes'] * day)}/day, which "
      f"backups and replicas carry), **{per_second['postgres_cpu_us'] / 1e6:.1f} cores** of "
      "PostgreSQL CPU (this machine's per-operation CPU).")
    p(f"- **Connections**: {api_replicas} × {d['api_pool']} (api.poolSize) + {jwks_replicas} × "
      f"{jwks_pool} (iam-jwks: 2 × its worker count) = **{connections}**; PostgreSQL's default "
      f"max_connections is 100 (3 reserved for superusers). At the autoscalers' maxReplicas "
      f"({d['api_max_replicas']} api, {d['jwks_max_replicas']} jwks): **{max_connections}**.")
    # As the load grows the api scales out; the first fixed limit it meets is connections.
    usable = 100 - 3

    def api_replicas_at(k):
        return max(2, math.ceil(api_cores * k / (d["api_cpu_limit"] * TARGET_UTILISATION)) + SPARE_REPLICAS)

    def first_k(exceeded):
        k = 1.0
        while not exceeded(api_replicas_at(k)):
            k = round(k + 0.1, 1)
        return k

    k_cap = first_k(lambda r: r > d["api_max_replicas"])
    k_connections = first_k(lambda r: r * d["api_pool"] + jwks_replicas * jwks_pool > usable)
    p(f"- **As the load grows** (logins and refreshes × k): iam-api scales out, one replica per "
      f"{d['api_cpu_limit'] * TARGET_UTILISATION:g} cores of load, each holding {d['api_pool']} "
      f"connections. At **k ≈ {k_cap:.1f}** it needs more than the autoscaler's "
      f"{d['api_max_replicas']} replicas (a setting); at **k ≈ {k_connections:.1f}** "
      f"({api_replicas_at(k_connections)} replicas) the pools pass the {usable} connections a "
      f"default PostgreSQL lets applications open, while PostgreSQL's CPU is then "
      f"{per_second['postgres_cpu_us'] * k_connections / 1e6:.1f} cores and its WAL "
      f"{per_second['wal_bytes'] * k_connections / 2**20:.1f} MiB/s.")
    p("- **Disk**, steady state once each table's retention has turned over (rows × bytes per "
      "row; dead rows and free space that VACUUM leaves come on top):")
    p("")
    p("| table | rows added/s | rows added/day | kept | rows kept | size kept |")
    p("|---|---:|---:|---|---:|---:|")
    sizes = cost["row_sizes"]
    for table, rate, kept, why in tables:
        kept_rows = rate * kept
        p(f"| {table} | {rate:,.1f} | {rate * day / 1e6:,.2f} M | {why} | {kept_rows / 1e6:,.1f} M "
          f"| {gib(kept_rows * sizes[table]['total_bytes_per_row'])} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
