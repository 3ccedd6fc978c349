"""Introspects tokens at flexauth with authlib, a maintained OAuth client library, the way a
resource server in Python would: OAuth2Session.introspect_token with client_secret_basic.

Usage: authlib_introspect.py URL CLIENT_ID CLIENT_SECRET < {"name": "token", ...}
Prints {"name": {"status": 200, "body": {...}}, ...}.
"""
import json
import os
import sys

# flexauth listens on plain HTTP in the test; authlib refuses that unless told it is on purpose.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from authlib.integrations.requests_client import OAuth2Session  # noqa: E402


def main():
    url, client_id, client_secret = sys.argv[1:4]
    session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_basic")
    answers = {}
    for name, token in json.load(sys.stdin).items():
        response = session.introspect_token(url, token=token, token_type_hint="access_token")
        answers[name] = {"status": response.status_code, "body": response.json()}
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
