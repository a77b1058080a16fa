#!/usr/bin/env python3
"""Checks that two iam-api replicas on one database behave as one service (bench/run replicas).

    bench/replicas.py API_A API_B JWKS_URL DATABASE_URL

Exits non-zero, saying which, when one of these does not hold:

- a refresh token rotated on A and replayed on B is a replay: B refuses it, revokes its
  family (the replayed token and the successor A issued; one `refresh_token.replayed` audit
  event), and A then refuses that successor;
- the per-account login throttle is one counter: five wrong passwords split across A and B
  (A, B, A, B, A) leave B, which saw only two, answering 429, as one replica would after five;
- an access token signed by either replica is accepted by the other (GET /me), and both
  were signed with a key that iam-jwks publishes.

Prints one JSON line with what it saw.
"""

import base64
import functools
import json
import subprocess
import sys
import urllib.request

import http_client

# One request to a replica, up to 30 s.
call = functools.partial(http_client.call, timeout=30)


def expect(what, status, wanted):
    if status != wanted:
        sys.exit(f"replicas: {what}: got {status}, expected {wanted}")


def kid(token):
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def main():
    api_a, api_b, jwks_url, database_url = sys.argv[1:5]
    password = "replicas-password"
    seen = {}

    # Replay detection across replicas.
    email = "replicas-replay@example.com"
    expect("register on A", call("POST", f"{api_a}/api/v1/users", {"email": email, "password": password})[0], 201)
    status, first = call("POST", f"{api_a}/api/v1/tokens", {"email": email, "password": password})
    expect("login on A", status, 200)
    status, rotated = call("POST", f"{api_a}/api/v1/tokens",
                           {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    expect("refresh on A", status, 200)
    status, _ = call("POST", f"{api_b}/api/v1/tokens",
                     {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    expect("the token A rotated, replayed on B", status, 401)
    user_id = call("GET", f"{api_a}/api/v1/me", token=first["access_token"])[1]["id"]
    live, events = subprocess.run(
        ["psql", database_url, "-AtXc",
         f"""SELECT (SELECT count(*) FROM refresh_tokens WHERE user_id = '{user_id}' AND revoked_at IS NULL),
                    (SELECT string_agg(detail->>'revoked', ',') FROM audit_events
                     WHERE type = 'refresh_token.replayed' AND subject = '{user_id}')"""],
        check=True, capture_output=True, text=True).stdout.strip().split("|")
    # B revoked both tokens of the family: the one replayed and the successor A issued.
    if (live, events) != ("0", "2"):
        sys.exit(f"replicas: after the replay on B, {live} tokens of the family are live and the "
                 f"replay events revoked [{events}] (expected 0 live, one event revoking 2)")
    status, _ = call("POST", f"{api_a}/api/v1/tokens",
                     {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]})
    expect("A's successor, presented to A after the replay on B", status, 401)
    seen["replay"] = ("rotated on A, replayed on B: 401, B revoked the family (both tokens, one audit "
                      "event), A then refused its own successor: 401")

    # One login throttle across replicas.
    email = "replicas-throttle@example.com"
    expect("register on B", call("POST", f"{api_b}/api/v1/users", {"email": email, "password": password})[0], 201)
    answers = []
    for replica in (api_a, api_b, api_a, api_b, api_a):
        answers.append(call("POST", f"{replica}/api/v1/tokens", {"email": email, "password": "wrong-password"})[0])
    if answers != [401] * 5:
        sys.exit(f"replicas: five wrong passwords across A and B got {answers}, expected five 401")
    status, _ = call("POST", f"{api_b}/api/v1/tokens", {"email": email, "password": "wrong-password"})
    expect("a sixth attempt on B, which saw two failures", status, 429)
    status, _ = call("POST", f"{api_b}/api/v1/tokens", {"email": email, "password": password})
    expect("the right password on B while throttled", status, 429)
    seen["throttle"] = "5 wrong passwords A,B,A,B,A: 401 each; then 429 on B, right password too"

    # Tokens signed by either are accepted by the other; iam-jwks publishes their key.
    email = "replicas-tokens@example.com"
    expect("register on A", call("POST", f"{api_a}/api/v1/users", {"email": email, "password": password})[0], 201)
    tokens = {}
    for name, replica in (("A", api_a), ("B", api_b)):
        status, pair = call("POST", f"{replica}/api/v1/tokens", {"email": email, "password": password})
        expect(f"login on {name}", status, 200)
        tokens[name] = pair["access_token"]
    expect("A's token at B's /me", call("GET", f"{api_b}/api/v1/me", token=tokens["A"])[0], 200)
    expect("B's token at A's /me", call("GET", f"{api_a}/api/v1/me", token=tokens["B"])[0], 200)
    with urllib.request.urlopen(f"{jwks_url}/.well-known/jwks.json", timeout=10) as response:
        published = {key["kid"] for key in json.load(response)["keys"]}
    kids = {name: kid(token) for name, token in tokens.items()}
    if not set(kids.values()) <= published:
        sys.exit(f"replicas: signing keys {kids} not all in iam-jwks's set {sorted(published)}")
    seen["tokens"] = (f"A's token accepted by B and B's by A; signing kids A={kids['A']} B={kids['B']}, "
                      f"both in iam-jwks's {len(published)}-key set")
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
