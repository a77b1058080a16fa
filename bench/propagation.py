#!/usr/bin/env python3
"""Revocation propagation: how long after a revoking change a running sidecar still accepts
the revoked token.

    bench/propagation.py API_URL SIDECAR_URL EVENTS CONCURRENCY OUT_JSON

For each event a user of its own logs in, its token is checked to pass the sidecar, the
user waits a random time within the poll interval, signs out everywhere (DELETE
/api/v1/me/sessions), and from the moment that answer arrives (the change has committed)
the token is sent through the sidecar every 10 ms until it is refused. The random wait
spreads the events over every phase of the sidecar's poll: without it each event would
start right after the poll that ended the one before, and every event would measure the
worst case. Events run CONCURRENCY at a time. Writes p50/p99/max in milliseconds to
OUT_JSON and prints one line.
"""

import functools
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import http_client

POLL_SECONDS = 0.01
DEADLINE_SECONDS = 60
# The sidecar's REVOCATION_REFRESH_INTERVAL in the bench (the shipped default).
FEED_INTERVAL_SECONDS = 5.0
# One request to the api or the sidecar, up to 10 s: (status, text).
send = functools.partial(http_client.send, timeout=10)


def one_event(api, sidecar, index):
    email = f"propagation-{index}@example.com"
    credentials = {"email": email, "password": "bench-password"}
    status, _ = send("POST", f"{api}/api/v1/users", body=credentials)
    if status != 201:
        raise SystemExit(f"registration of {email}: {status}")
    status, body = send("POST", f"{api}/api/v1/tokens", body=credentials)
    if status != 200:
        raise SystemExit(f"login of {email}: {status}")
    token = json.loads(body)["access_token"]
    status, _ = send("GET", sidecar, token=token)
    if status != 200:
        raise SystemExit(f"the sidecar refused a fresh token: {status}")
    time.sleep(random.uniform(0, FEED_INTERVAL_SECONDS))
    status, _ = send("DELETE", f"{api}/api/v1/me/sessions", token=token)
    if status != 204:
        raise SystemExit(f"sign-out of {email}: {status}")
    committed = time.monotonic()
    while True:
        status, _ = send("GET", sidecar, token=token)
        now = time.monotonic()
        if status == 401:
            return (now - committed) * 1000
        if now - committed > DEADLINE_SECONDS:
            raise SystemExit(f"the sidecar still accepts a revoked token after {DEADLINE_SECONDS} s")
        time.sleep(POLL_SECONDS)


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def main():
    api, sidecar, events, concurrency, out = sys.argv[1:]
    events, concurrency = int(events), int(concurrency)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = sorted(pool.map(lambda index: one_event(api, sidecar, index), range(events)))
    report = {
        "events": events,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1),
        "min_ms": round(latencies[0], 1),
    }
    json.dump(report, open(out, "w"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
