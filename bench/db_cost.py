#!/usr/bin/env python3
"""What each operation costs PostgreSQL: round trips, transactions and rows written, measured.

    bench/db_cost.py [--bin DIR] [--users N] [--operations N] [--json PATH]

Starts iam-api (and, for the JWKS step, iam-jwks) against a fresh database, each through a
small counting proxy between it and PostgreSQL, and runs every operation N times (after a
warm-up, so that each pooled connection has prepared its statements). Around each batch it
reads:

- from the proxy, the messages the service sent: every Sync, Flush or simple Query is one
  round trip (the service waits for the answer before it goes on). A Sync that closes a
  batch with an Execute is a statement; one after Parse/Describe only is a prepare (once per
  statement and connection: the warm-up should leave none); an empty Sync is a connection
  test (a ping: iam-core pings a connection that idled a second or more before handing it
  out); simple queries are BEGIN, COMMIT and ROLLBACK.
- from PostgreSQL's statistics (pg_stat_database, pg_stat_user_tables of the database),
  transactions committed and rolled back and rows inserted, updated and deleted, per table;
  the WAL written (pg_current_wal_lsn, cluster-wide: run it alone, under the bench lock) and
  the CPU time of every PostgreSQL process (/proc; so PostgreSQL must run on this machine).

At the end, the size of a row of each table as stored: the run's rows are copied, with
fresh keys, into a scratch table with the same indexes until it holds 50,000, and after
VACUUM the tuple (pg_column_size), the heap (pg_relation_size) and the heap plus indexes
(pg_total_relation_size) are divided by the rows.

pg_stat_statements would count statements too, but it needs shared_preload_libraries and a
server restart, which a shared server should not get for a measurement.

iam-api runs as bench/run starts it (the chart's pool size, LOG_FORMAT=json, --config=local);
its background work (key reload every JWKS_REFRESH_INTERVAL, the pruner every 10 minutes)
falls into the windows too and adds well under 0.05 round trips per operation at the
default N. Prints a Markdown table; --json writes the figures.
"""

import argparse
import base64
import concurrent.futures
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import http_client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = ("127.0.0.1", 5432)
API_PORT, JWKS_PORT = 18010, 18011
API_PROXY_PORT, JWKS_PROXY_PORT = 18012, 18013
CONCURRENCY = 4
SIZE_ROWS = 50000
# An id ordered like a UUIDv7 (the counter where the time is), from row number i.
ORDERED_ID = "(lpad(to_hex(i), 12, '0') || substr(md5(random()::text), 1, 20))::uuid"
# The tables whose size matters, and how a copied row gets fresh keys.
SIZED_TABLES = {
    "users": {"id": ORDERED_ID, "email": "i || '.' || email"},
    "refresh_tokens": {"id": ORDERED_ID, "token_hash": "sha256(i::text::bytea)"},
    "audit_events": {"id": ORDERED_ID},
    "login_failures": {"email": "i || '.' || email"},
    "revoked_subjects": {"subject": "gen_random_uuid()::text"},
}


class Counts:
    """Messages one service sent to PostgreSQL, classified by what the service waited for."""

    FIELDS = ("statements", "prepares", "pings", "begin", "commit", "rollback", "other_queries")

    def __init__(self):
        self.lock = threading.Lock()
        self.values = dict.fromkeys(self.FIELDS, 0)

    def add(self, field):
        with self.lock:
            self.values[field] += 1

    def snapshot(self):
        with self.lock:
            return dict(self.values)


def count_frontend(stream, counts):
    """Reads one connection's frontend messages from `stream` (a generator of byte chunks)."""
    buffer = b""
    startup = True
    batch = set()
    for chunk in stream:
        buffer += chunk
        while True:
            if startup:
                if len(buffer) < 8:
                    break
                length, code = struct.unpack("!ii", buffer[:8])
                if len(buffer) < length:
                    break
                buffer = buffer[length:]
                # SSLRequest / GSSENCRequest are answered with one byte, then the real startup
                # follows; the services are told sslmode=disable, so the stream stays readable.
                startup = code in (80877103, 80877104)
                continue
            if len(buffer) < 5:
                break
            kind = buffer[:1]
            (length,) = struct.unpack("!i", buffer[1:5])
            if len(buffer) < 1 + length:
                break
            body, buffer = buffer[5:1 + length], buffer[1 + length:]
            if kind in (b"S", b"H"):
                if b"E" in batch:
                    counts.add("statements")
                elif b"P" in batch or b"D" in batch:
                    counts.add("prepares")
                else:
                    counts.add("pings")
                batch.clear()
            elif kind == b"Q":
                word = body.rstrip(b"\0").strip().split(b" ")[0].upper()
                counts.add({b"BEGIN": "begin", b"COMMIT": "commit",
                            b"ROLLBACK": "rollback"}.get(word, "other_queries"))
            else:
                batch.add(kind)


def serve_proxy(port, counts):
    """Forwards 127.0.0.1:port to PostgreSQL, counting what clients send."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)

    def pipe(source, sink, tap):
        def chunks():
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    sink.sendall(data)
                except OSError:
                    return
                yield data
        if tap:
            count_frontend(chunks(), counts)
        else:
            for _ in chunks():
                pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept():
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(PG)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=pipe, args=(server, client, False), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def psql(database, sql):
    return subprocess.run(["psql", "-h", PG[0], "-U", "postgres", "-d", database, "-AtXqc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def database_stats(database):
    """Cluster-wide WAL position and the database's counters, read from another database so
    that reading them adds nothing to them."""
    row = psql("postgres", f"""SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, xact_commit,
        xact_rollback, tup_inserted, tup_updated, tup_deleted
        FROM pg_stat_database WHERE datname = '{database}'""").split("|")
    return dict(zip(("wal_bytes", "commits", "rollbacks", "inserted", "updated", "deleted"),
                    (int(float(v)) for v in row)))


def settled_stats(database):
    """The counters once every backend has flushed its pending statistics. PostgreSQL 15
    flushes at most once a second per backend and holds what is left until the backend has
    idled 10 s (PGSTAT_IDLE_INTERVAL), so the counters are read when they have not moved for
    11 s."""
    last, quiet_since = database_stats(database), time.monotonic()
    deadline = quiet_since + 60
    while time.monotonic() - quiet_since < 11 and time.monotonic() < deadline:
        time.sleep(1)
        now = database_stats(database)
        if {k: v for k, v in now.items() if k != "wal_bytes"} != \
                {k: v for k, v in last.items() if k != "wal_bytes"}:
            quiet_since = time.monotonic()
        last = now
    return last


def postgres_cpu_ns():
    """CPU time (nanoseconds, from schedstat: clock ticks are too coarse for a few hundred
    operations) used so far by every PostgreSQL process, by pid."""
    spent = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if open(f"/proc/{pid}/comm").read().strip() != "postgres":
                continue
            spent[pid] = int(open(f"/proc/{pid}/schedstat").read().split()[0])
        except OSError:
            continue
    return spent


def cpu_spent(before, after):
    """Nanoseconds spent between two readings by processes alive at the second (those that
    exited in between are left out: only the short-lived psql sessions of this script do)."""
    return sum(t - before.get(pid, 0) for pid, t in after.items())


def table_stats(database):
    rows = psql(database, "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
    return {name: (int(i), int(u), int(d)) for name, i, u, d in
            (line.split("|") for line in rows.splitlines() if line)}


def request(method, url, body=None, headers=None, expect=(200, 201, 204)):
    status, text = http_client.send(method, url, body, headers=headers, timeout=30)
    if status not in expect:
        raise SystemExit(f"{method} {url} answered {status}: {text[:300]}")
    return http_client.json_or_text(text)


def run_parallel(function, items):
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(function, items))


def wait_healthy(url, process, log):
    for _ in range(150):
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited:\n{open(log).read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"not healthy: {url}")


def chart_pool_size():
    in_api = False
    for line in open(os.path.join(ROOT, "charts/iam/values.yaml")):
        if line.startswith("api:"):
            in_api = True
        elif line[:1] not in (" ", "#", "\n"):
            in_api = False
        elif in_api and line.startswith("  poolSize:"):
            return line.split()[1]
    raise SystemExit("api.poolSize not found in charts/iam/values.yaml")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=os.environ.get("IAM_BIN_DIR", os.path.join(ROOT, "target/release")))
    parser.add_argument("--users", type=int, default=50,
                        help="accounts per group (registration and login run 3 x this)")
    parser.add_argument("--operations", type=int, default=400,
                        help="refreshes, client-credentials grants, /me calls")
    parser.add_argument("--json")
    args = parser.parse_args()

    database = f"iam_dbcost_{int(time.time())}_{os.getpid()}"
    psql("postgres", f"CREATE DATABASE {database}")
    work = tempfile.mkdtemp()
    processes = []
    try:
        api_counts, jwks_counts = Counts(), Counts()
        serve_proxy(API_PROXY_PORT, api_counts)
        serve_proxy(JWKS_PROXY_PORT, jwks_counts)
        direct_url = f"postgres://postgres@127.0.0.1:5432/{database}"
        env = dict(os.environ, LOG_FORMAT="json",
                   POSTGRES_POOL_SIZE=os.environ.get("POSTGRES_POOL_SIZE", chart_pool_size()))
        api_log = os.path.join(work, "api.log")
        api = subprocess.Popen(
            [os.path.join(args.bin, "iam-api"), "--config=local", "--migrate=true"],
            env=dict(env, PORT=str(API_PORT), POSTGRES_CONNECTION_STRING=
                     f"postgres://postgres@127.0.0.1:{API_PROXY_PORT}/{database}?sslmode=disable"),
            stdout=open(api_log, "w"), stderr=subprocess.STDOUT)
        processes.append(api)
        base = f"http://127.0.0.1:{API_PORT}/api/v1"
        wait_healthy(f"{base}/healthcheck", api, api_log)

        # Setup, not measured: the bench user, three groups of accounts, one client.
        password = "bench-password"
        request("POST", f"{base}/users", {"email": "bench@example.com", "password": password})
        bench = request("POST", f"{base}/tokens", {"email": "bench@example.com", "password": password})
        client = subprocess.run([os.path.join(args.bin, "iam-api"), "--config=local", "clients", "create",
                                 "--name", "db-cost", "--role", "user"],
                                env=dict(env, POSTGRES_CONNECTION_STRING=direct_url),
                                check=True, capture_output=True, text=True).stdout
        client_id = re.search(r"^client_id=(.*)$", client, re.M).group(1)
        client_secret = re.search(r"^client_secret=(.*)$", client, re.M).group(1)
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        groups = ("chain", "revoke", "signout")
        emails = [f"{group}-{i}@example.com" for group in groups for i in range(args.users)]
        warm_emails = [f"warm-{i}@example.com" for i in range(2 * CONCURRENCY * 4)]
        pairs = {}
        bearer = {"Authorization": f"Bearer {bench['access_token']}"}

        def register(email):
            request("POST", f"{base}/users", {"email": email, "password": password})

        def login(email):
            pairs[email] = request("POST", f"{base}/tokens", {"email": email, "password": password})

        def failed_login(email):
            request("POST", f"{base}/tokens", {"email": email, "password": "wrong-password"},
                    expect=(401,))

        def refresh_chain(email, count):
            token = pairs[email]["refresh_token"]
            for _ in range(count):
                token = request("POST", f"{base}/tokens", {"grant_type": "refresh_token",
                                                           "refresh_token": token})["refresh_token"]
            pairs[email]["refresh_token"] = token

        def client_credentials(_):
            request("POST", f"{base}/tokens", "grant_type=client_credentials",
                    {"Authorization": f"Basic {basic}",
                     "content-type": "application/x-www-form-urlencoded"})

        def me(_):
            request("GET", f"{base}/me", headers=bearer)

        def revoke(email):
            request("POST", f"{base}/tokens/revoke", {"token": pairs[email]["refresh_token"]})

        def sign_out(email):
            request("DELETE", f"{base}/me/sessions",
                    headers={"Authorization": f"Bearer {pairs[email]['access_token']}"})

        group = {g: [e for e in emails if e.startswith(g + "-")] for g in groups}
        chain_length = max(1, args.operations // len(group["chain"]))
        # (name, what one operation is, N, warm-up, the batch)
        steps = [
            ("registration", "POST /users", len(emails),
             lambda: run_parallel(register, warm_emails), lambda: run_parallel(register, emails)),
            ("login", "POST /tokens, password grant", len(emails),
             lambda: run_parallel(login, warm_emails), lambda: run_parallel(login, emails)),
            ("login-failed", "POST /tokens, wrong password, a new email each", args.users,
             lambda: run_parallel(failed_login, [f"warm-unknown-{i}@example.com" for i in range(16)]),
             lambda: run_parallel(failed_login, [f"unknown-{i}@example.com" for i in range(args.users)])),
            ("refresh", "POST /tokens, refresh grant", chain_length * len(group["chain"]),
             lambda: run_parallel(lambda e: refresh_chain(e, 2), warm_emails),
             lambda: run_parallel(lambda e: refresh_chain(e, chain_length), group["chain"])),
            ("client-credentials", "POST /tokens, client credentials", args.operations,
             lambda: run_parallel(client_credentials, range(64)),
             lambda: run_parallel(client_credentials, range(args.operations))),
            ("me", "GET /me", args.operations,
             lambda: run_parallel(me, range(64)), lambda: run_parallel(me, range(args.operations))),
            ("revoke", "POST /tokens/revoke, a refresh token (logout of one session)", len(group["revoke"]),
             lambda: run_parallel(revoke, warm_emails[:CONCURRENCY * 2]),
             lambda: run_parallel(revoke, group["revoke"])),
            ("sign-out", "DELETE /me/sessions (one session, one refresh token)", len(group["signout"]),
             lambda: run_parallel(sign_out, warm_emails[CONCURRENCY * 2:CONCURRENCY * 4]),
             lambda: run_parallel(sign_out, group["signout"])),
        ]
        results = []
        # Every warm-up first, so that one settling of the statistics separates each batch
        # from the next.
        print("warming up", file=sys.stderr)
        for _, _, _, warm_up, _ in steps:
            warm_up()
        after_db, after_tables = settled_stats(database), table_stats(database)
        for name, what, n, _, batch in steps:
            print(f"{name}: {n} operations", file=sys.stderr)
            before_db, before_tables = after_db, after_tables
            before_rt, before_cpu = api_counts.snapshot(), postgres_cpu_ns()
            started = time.monotonic()
            batch()
            elapsed = time.monotonic() - started
            after_rt, after_cpu = api_counts.snapshot(), postgres_cpu_ns()
            postgres_cpu_us = cpu_spent(before_cpu, after_cpu) / 1e3 / n
            after_db, after_tables = settled_stats(database), table_stats(database)
            rt = {k: (after_rt[k] - before_rt[k]) / n for k in Counts.FIELDS}
            # The table read between the two database reads is one committed transaction.
            db = {k: (after_db[k] - before_db[k] - (1 if k == "commits" else 0)) / n for k in after_db}
            tables = {}
            for table, values in after_tables.items():
                old = before_tables.get(table, (0, 0, 0))
                delta = [(a - b) / n for a, b in zip(values, old)]
                if any(delta):
                    tables[table] = dict(zip(("inserted", "updated", "deleted"), delta))
            results.append({"operation": name, "what": what, "n": n, "seconds": round(elapsed, 2),
                            "round_trips": round(sum(rt.values()), 2),
                            "messages": {k: round(v, 2) for k, v in rt.items()},
                            "transactions": round(db["commits"] + db["rollbacks"], 2),
                            "rollbacks": round(db["rollbacks"], 2),
                            "rows_inserted": round(db["inserted"], 2), "rows_updated": round(db["updated"], 2),
                            "rows_deleted": round(db["deleted"], 2), "wal_bytes": round(db["wal_bytes"]),
                            "postgres_cpu_us": round(postgres_cpu_us),
                            "tables": {t: {k: round(v, 2) for k, v in d.items()} for t, d in tables.items()}})

        # iam-jwks: serves prepared documents; its database work is its reload loops, whatever
        # the request rate. Measured as round trips over an idle window and a busy one.
        jwks_log = os.path.join(work, "jwks.log")
        jwks = subprocess.Popen(
            [os.path.join(args.bin, "iam-jwks"), "--config=local"],
            env=dict(env, PORT=str(JWKS_PORT), POSTGRES_CONNECTION_STRING=
                     f"postgres://postgres@127.0.0.1:{JWKS_PROXY_PORT}/{database}?sslmode=disable"),
            stdout=open(jwks_log, "w"), stderr=subprocess.STDOUT)
        processes.append(jwks)
        jwks_url = f"http://127.0.0.1:{JWKS_PORT}"
        wait_healthy(f"{jwks_url}/api/v1/healthcheck", jwks, jwks_log)
        window = 10.0
        idle_before = sum(jwks_counts.snapshot().values())
        time.sleep(window)
        idle = sum(jwks_counts.snapshot().values()) - idle_before
        busy_before, started, served = sum(jwks_counts.snapshot().values()), time.monotonic(), 0
        while time.monotonic() - started < window:
            request("GET", f"{jwks_url}/.well-known/jwks.json")
            request("GET", f"{jwks_url}/api/v1/revocations", expect=(200,))
            served += 2
        busy_seconds = time.monotonic() - started
        busy = sum(jwks_counts.snapshot().values()) - busy_before
        feed = urllib.request.urlopen(f"{jwks_url}/api/v1/revocations", timeout=10).read()
        feed_entries = int(psql(database, "SELECT (SELECT count(*) FROM revoked_subjects) + "
                                          "(SELECT count(*) FROM revoked_access_tokens)"))
        jwks_row = {"revocation_feed_bytes": len(feed), "revocation_feed_entries": feed_entries,"idle_round_trips_per_second": round(idle / window, 2),
                    "busy_round_trips_per_second": round(busy / busy_seconds, 2),
                    "requests": served, "requests_per_second_sent": round(served / busy_seconds),
                    "messages": jwks_counts.snapshot()}

        # Row sizes as stored: a few hundred rows fill pages and index metapages unevenly, so
        # each table's real rows are copied into a scratch table with the same columns and
        # indexes (LIKE ... INCLUDING ALL) until it holds SIZE_ROWS, with fresh keys (ids
        # ordered by a time-like prefix, as the UUIDv7 ids are; emails and hashes unique),
        # and that table is measured after VACUUM.
        sizes = {}
        for table, keys in SIZED_TABLES.items():
            rows = int(psql(database, f"SELECT count(*) FROM {table}"))
            if rows == 0:
                continue
            columns = psql(database, f"""SELECT string_agg(column_name, ',' ORDER BY ordinal_position)
                FROM information_schema.columns WHERE table_name = '{table}'""").split(",")
            select = ",".join(keys.get(c, c) for c in columns)
            psql(database, f"""CREATE TABLE sized (LIKE {table} INCLUDING ALL);
                INSERT INTO sized SELECT {select} FROM
                  (SELECT t.*, row_number() OVER () AS i
                   FROM {table} t, generate_series(1, {SIZE_ROWS} / {rows} + 1) g) t
                WHERE i <= {SIZE_ROWS} ORDER BY i""")
            psql(database, "VACUUM ANALYZE sized")
            tuple_bytes, heap, total = psql(database, """SELECT avg(pg_column_size(t.*))::int,
                pg_relation_size('sized'), pg_total_relation_size('sized') FROM sized t""").split("|")
            psql(database, "DROP TABLE sized")
            sizes[table] = {"rows_copied": rows, "tuple_bytes": int(tuple_bytes),
                            "heap_bytes_per_row": round(int(heap) / SIZE_ROWS),
                            "total_bytes_per_row": round(int(total) / SIZE_ROWS)}
        report = {"database_pool_size": int(env["POSTGRES_POOL_SIZE"]), "concurrency": CONCURRENCY,
                  "postgres": psql("postgres", "SHOW server_version"),
                  "operations": results, "jwks": jwks_row, "row_sizes": sizes}
        if args.json:
            json.dump(report, open(args.json, "w"), indent=2)
        print_report(report)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        subprocess.run(["psql", "-h", PG[0], "-U", "postgres", "-qXc",
                        f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], capture_output=True)


def print_report(report):
    print("| operation | round trips | of which BEGIN+COMMIT | pings | transactions | rows inserted "
          "| rows updated | rows deleted | WAL bytes | PostgreSQL CPU µs | rows written, by table |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in report["operations"]:
        m = row["messages"]
        by_table = ", ".join(
            f"{t} " + "/".join(f"{k[0]}{v:g}" for k, v in d.items() if v)
            for t, d in sorted(row["tables"].items()))
        print(f"| {row['operation']} | {row['round_trips']:g} | {m['begin'] + m['commit'] + m['rollback']:g} "
              f"| {m['pings']:g} | {row['transactions']:g} | {row['rows_inserted']:g} | {row['rows_updated']:g} "
              f"| {row['rows_deleted']:g} | {row['wal_bytes']} | {row['postgres_cpu_us']} | {by_table} |")
    j = report["jwks"]
    print(f"\niam-jwks: {j['idle_round_trips_per_second']} round trips/s idle, "
          f"{j['busy_round_trips_per_second']} while serving {j['requests_per_second_sent']} requests/s "
          f"(JWKS and revocation feed): per request 0, the reload loops are the whole cost; "
          f"revocation feed {j['revocation_feed_bytes']} bytes with {j['revocation_feed_entries']} entries")
    print(f"\n| table | tuple bytes | heap bytes/row | heap+index bytes/row |")
    print("|---|---:|---:|---:|")
    for table, s in report["row_sizes"].items():
        print(f"| {table} | {s['tuple_bytes']} | {s['heap_bytes_per_row']} | {s['total_bytes_per_row']} |")
    print(f"(row sizes: the run's rows copied to {SIZE_ROWS:,} per table with fresh keys, after VACUUM)")
    print(f"\n(i/u/d: rows inserted/updated/deleted per operation; pool {report['database_pool_size']}, "
          f"{report['concurrency']} client threads, PostgreSQL {report['postgres']})")


if __name__ == "__main__":
    main()
