"""Schemathesis hooks for flexauth's API fuzz (scripts/api-fuzz).

Before the run, a few verified accounts are made the way a person makes one: sign up, open the
emailed link, confirm. During the run, requests to the operations that need a bearer carry the
access token of a live one of those accounts. Generated requests may delete an account, end
its sessions or move it; the provider then logs in to the next one.

The accounts sign up from 127.0.0.2 and log in from 127.0.0.3, so the rate limits that the
generated requests (from 127.0.0.1) run into do not stop them.
"""

import base64
import email
import http.client
import json
import os
import pathlib
import re
import secrets
import time

import schemathesis

HOST = "127.0.0.1"
PORT = int(os.environ["FLEXAUTH_FUZZ_PORT"])
MAIL_DIR = pathlib.Path(os.environ["FLEXAUTH_FUZZ_MAIL_DIR"])
ACCOUNTS = 6
PASSWORD = "fuzzing is a kind of testing"


def call(method, path, body=None, source="127.0.0.3"):
    connection = http.client.HTTPConnection(HOST, PORT, timeout=10, source_address=(source, 0))
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, json.loads(payload) if payload.startswith(b"{") else None


def verification_token(address, deadline):
    """The token of the verification link emailed to `address`."""
    while time.monotonic() < deadline:
        for path in MAIL_DIR.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes())
            if message["To"] != address:
                continue
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    found = re.search(r"/v1/auth/verify\?token=([A-Za-z0-9_-]{43})", part.get_payload(decode=True).decode())
                    if found:
                        return found.group(1)
        time.sleep(0.1)
    raise RuntimeError(f"no verification mail for {address}")


def make_account():
    address = f"fuzz-{secrets.token_hex(6)}@example.com"
    status, _ = call("POST", "/v1/auth/signup", {"email": address, "password": PASSWORD}, source="127.0.0.2")
    if status != 202:
        raise RuntimeError(f"sign-up answered {status}")
    token = verification_token(address, time.monotonic() + 20)
    status, _ = call("POST", "/v1/auth/verify", {"token": token}, source="127.0.0.2")
    if status != 200:
        raise RuntimeError(f"confirmation answered {status}")
    return address


ADDRESSES = [make_account() for _ in range(ACCOUNTS)]

# The resource server scripts/api-fuzz registered with `flexauth clients create`.
CLIENT_CREDENTIALS = base64.b64encode(
    f"{os.environ['FLEXAUTH_FUZZ_CLIENT_ID']}:{os.environ['FLEXAUTH_FUZZ_CLIENT_SECRET']}".encode()
).decode()

PUBLIC = r"^/(healthz|readyz|openapi\.json|\.well-known/jwks\.json|v1/auth/(signup|verify|verify/resend|login|refresh|password/forgot|password/reset|email/confirm|email/undo))$"


@schemathesis.auth(refresh_interval=15, retry_on=[401]).skip_for(path_regex=PUBLIC)
class LiveAccount:
    """The access token of the first account that still logs in."""

    def get(self, case, context):
        attempts = 0
        while ADDRESSES and attempts < 20:
            attempts += 1
            status, body = call("POST", "/v1/auth/login", {"email": ADDRESSES[0], "password": PASSWORD})
            if status == 200:
                return body["data"]["access_token"]
            if status in (401, 403):
                # Deleted, moved or disabled by a generated request: the next one.
                ADDRESSES.pop(0)
            else:
                # Busy (503) or limited (429): wait and ask again.
                time.sleep(1)
        return "no-account-left"

    def set(self, case, data, context):
        case.headers = case.headers or {}
        if case.path == "/v1/auth/introspect":
            # A registered resource server asks about the account's access token.
            case.headers["Authorization"] = "Basic " + CLIENT_CREDENTIALS
        else:
            case.headers["Authorization"] = f"Bearer {data}"
