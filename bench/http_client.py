"""JSON over HTTP for the bench scripts (urllib only, so they need nothing installed).

The scripts import it from their own directory (Python puts a script's directory first on
sys.path), so `bench/X.py` works from any working directory.
"""

import json
import urllib.error
import urllib.request


def send(method, url, body=None, *, token=None, headers=None, timeout):
    """Sends one request and returns (status, text); an error status is returned, not raised.

    A dict body goes as JSON, a str body as it is (give its content-type in headers)."""
    headers = dict(headers or {})
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None
    if isinstance(body, str):
        data = body.encode()
    elif body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def json_or_text(text):
    """An answer's text as JSON when it is a JSON object, else the text itself."""
    return json.loads(text) if text.startswith("{") else text


def call(method, url, body=None, *, token=None, headers=None, timeout):
    """Sends one request and returns (status, answer), the answer as json_or_text gives it."""
    status, text = send(method, url, body, token=token, headers=headers, timeout=timeout)
    return status, json_or_text(text)
