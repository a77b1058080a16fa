#!/usr/bin/env python3
"""Many distinct access tokens for the sidecar's many-token scenario.

    bench/tokens.py API_URL EMAIL PASSWORD COUNT OUT_FILE

Logs in once per chain (8 chains, one after another: concurrent logins of one account are
throttled) and walks the chains at once with the refresh grant: every answer carries a new
access token (its own jti and signature) and the next refresh token.
Writes COUNT access tokens, one per line. Refresh is an RS256 signature and one database
round trip, so 20,000 tokens take seconds; logins (argon2id) would take minutes.
"""

import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CHAINS = 8


def post(api, body):
    request = urllib.request.Request(
        f"{api}/api/v1/tokens",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def chain(api, pair, count):
    tokens = [pair["access_token"]]
    while len(tokens) < count:
        pair = post(api, {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
        tokens.append(pair["access_token"])
    return tokens


def main():
    api, email, password, count, out = sys.argv[1:]
    count = int(count)
    per_chain = [count // CHAINS + (1 if index < count % CHAINS else 0) for index in range(CHAINS)]
    logins = [post(api, {"email": email, "password": password}) for _ in range(CHAINS)]
    with ThreadPoolExecutor(CHAINS) as pool:
        chains = list(pool.map(lambda args: chain(api, *args), zip(logins, per_chain)))
    tokens = [token for tokens in chains for token in tokens]
    if len(set(tokens)) != count:
        sys.exit(f"expected {count} distinct tokens, got {len(set(tokens))}")
    with open(out, "w") as file:
        file.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    main()
