"""A webhook receiver for flexauth, on the Python standard library and the official
Standard Webhooks library (pip install standardwebhooks).

    FLEXAUTH_WEBHOOK_SECRET=whsec_... python receiver.py 8000

It verifies every message (signature and timestamp) before reading it, answers 204 at once,
and handles each event once: flexauth delivers at least once, and the `webhook-id` of a message
is the same on every attempt. Here the ids seen are kept in a set; keep them in your database,
in the transaction that applies the event, so a crash cannot apply one twice. Each event
handled is printed as one line of JSON.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["FLEXAUTH_WEBHOOK_SECRET"])
seen = set()
seen_lock = Lock()
print_lock = Lock()


def handle(event):
    """Apply the event to your application: here, print it (one line at a time: requests are
    served on several threads)."""
    with print_lock:
        print(json.dumps(event), flush=True)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(401)
            self.end_headers()
            return
        with seen_lock:
            first_time = self.headers["webhook-id"] not in seen
            seen.add(self.headers["webhook-id"])
        if first_time:
            handle({"webhook_id": self.headers["webhook-id"], **event})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    server.serve_forever()
