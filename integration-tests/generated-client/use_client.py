"""Drives a running iam-api through a Python client generated from openapi.json.

    python use_client.py BASE_URL ADMIN_TOKEN

The package `iam_client` (openapi-python-client's output) must be importable. Every call
goes through the generated functions and models, so a document that generators misread
(a body, a security requirement, a response schema) fails here. Exits non-zero with the
failed check on the first surprise.
"""

import importlib.util
import pathlib
import sys
import uuid


def work_around_unset_import():
    """openapi-python-client 0.29.1 types a required body offered in two media types (our
    token endpoints: JSON and form) as `... | Unset` without importing `Unset` (its open
    issues #1451 and #1276). Add the import, as its pending fix does; a generator that gets
    this right leaves nothing to patch."""
    package = pathlib.Path(importlib.util.find_spec("iam_client").origin).parent
    for module in package.glob("api/**/*.py"):
        text = module.read_text()
        if "| Unset" in text and "import Response, UNSET, Unset" not in text:
            module.write_text(text.replace("import Response, UNSET", "import Response, UNSET, Unset"))


work_around_unset_import()

from iam_client import AuthenticatedClient, Client  # noqa: E402
from iam_client.api.health import healthcheck  # noqa: E402
from iam_client.api.tokens import issue_tokens, revoke_token  # noqa: E402
from iam_client.api.users import create_user, list_users, me  # noqa: E402
from iam_client.models import (  # noqa: E402
    CreateUserRequest,
    HealthResponse,
    OAuthProblem,
    PasswordGrant,
    PasswordGrantType,
    RefreshTokenGrant,
    RefreshTokenGrantType,
    RevokeRequest,
    TokenPairResponse,
    UserPageResponse,
    UserResponse,
)


def check(condition, what):
    if not condition:
        sys.exit(f"generated client: {what}")


def main():
    base_url, admin_token = sys.argv[1], sys.argv[2]
    public = Client(base_url=base_url, raise_on_unexpected_status=True)

    health = healthcheck.sync_detailed(client=public)
    check(isinstance(health.parsed, HealthResponse), f"healthcheck parsed as {health.parsed!r}")
    check(health.parsed.status.value == "ok", "healthcheck status")

    # Registration is public while REGISTRATION=open; the generator types it as needing an
    # AuthenticatedClient (it reads `[{}, bearer]` as "bearer"), but a plain one works.
    email = f"client-{uuid.uuid4().hex[:12]}@example.com"
    password = "correct horse battery"
    created = create_user.sync_detailed(
        client=public, body=CreateUserRequest(email=email, password=password)
    )
    check(created.status_code == 201, f"register: {created.status_code} {created.content!r}")
    check(isinstance(created.parsed, UserResponse), "register parsed")
    check(
        created.headers.get("location") == f"/api/v1/users/{created.parsed.id}",
        f"register Location {created.headers.get('location')!r}",
    )

    # The password grant, sent as the OAuth form the generated client chooses.
    login = issue_tokens.sync_detailed(
        client=public,
        body=PasswordGrant(
            grant_type=PasswordGrantType.PASSWORD, username=email, password=password
        ),
    )
    check(login.status_code == 200, f"login: {login.status_code} {login.content!r}")
    check(isinstance(login.parsed, TokenPairResponse), f"login parsed as {login.parsed!r}")
    pair = login.parsed

    caller = AuthenticatedClient(base_url=base_url, token=pair.access_token)
    me_answer = me.sync_detailed(client=caller)
    check(me_answer.status_code == 200, f"me: {me_answer.status_code}")
    check(me_answer.parsed.email == email, "me email")

    refreshed = issue_tokens.sync_detailed(
        client=public,
        body=RefreshTokenGrant(
            grant_type=RefreshTokenGrantType.REFRESH_TOKEN, refresh_token=pair.refresh_token
        ),
    )
    check(isinstance(refreshed.parsed, TokenPairResponse), f"refresh: {refreshed.content!r}")

    # A wrong password: 401 with the OAuth error code, parsed into the documented schema.
    wrong = issue_tokens.sync_detailed(
        client=public, body=PasswordGrant(username=email, password="not the password")
    )
    check(wrong.status_code == 401, f"wrong password: {wrong.status_code}")
    check(isinstance(wrong.parsed, OAuthProblem), f"wrong password parsed as {wrong.parsed!r}")
    check(wrong.parsed.error.value == "invalid_grant", "OAuth error code")

    revoked = revoke_token.sync_detailed(
        client=public, body=RevokeRequest(token=refreshed.parsed.refresh_token)
    )
    check(revoked.status_code == 204, f"revoke: {revoked.status_code} {revoked.content!r}")

    admin = AuthenticatedClient(base_url=base_url, token=admin_token)
    page = list_users.sync_detailed(client=admin, limit=1)
    check(isinstance(page.parsed, UserPageResponse), f"list users: {page.content!r}")
    check(len(page.parsed.items) == 1, "a page of one")
    found = list_users.sync_detailed(client=admin, email=email.upper())
    check([user.email for user in found.parsed.items] == [email], "users by email")
    print("generated client: every check passed")


if __name__ == "__main__":
    main()
