"""A small HTTP client for SGLang endpoints: stdlib only, so it runs on any managed host.

Shared by the smoke checks and the GSM8K evaluator. Transport failures (connection
refused or reset, timeouts) raise TransportError; HTTP errors are answers, not failures.
"""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request


class TransportError(Exception):
    """The request never got an HTTP answer."""


class Answer:
    def __init__(self, status, body, seconds):
        self.status = status
        self.body = body
        self.seconds = seconds

    def json(self):
        return json.loads(self.body)

    def text(self, limit=300):
        return self.body.decode("utf-8", "replace")[:limit]


def parse_sse(text):
    """Split an SSE body into its data payloads; return (payloads, saw_done)."""
    payloads = []
    done = False
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if not data:
            continue
        payload = "\n".join(data)
        if payload == "[DONE]":
            done = True
            break
        payloads.append(payload)
    return payloads, done


class Endpoint:
    def __init__(self, base_url, api_key="", timeout=60.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def call(self, path, body=None, auth=True, timeout=None, key=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        key = self.api_key if key is None else key
        if auth and key:
            request.add_header("Authorization", "Bearer " + key)
        start = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as resp:
                return Answer(resp.status, resp.read(), time.monotonic() - start)
        except urllib.error.HTTPError as err:
            return Answer(err.code, err.read(), time.monotonic() - start)
        except (urllib.error.URLError, ConnectionError, socket.timeout,
                http.client.HTTPException, OSError) as err:
            raise TransportError(f"{path}: {getattr(err, 'reason', err)}") from err

    def call_with_retries(self, path, body, retries, timeout=None):
        """Retry only when the request got no HTTP answer at all."""
        for attempt in range(retries + 1):
            try:
                return self.call(path, body, timeout=timeout)
            except TransportError:
                if attempt == retries:
                    raise
                time.sleep(min(2 ** attempt, 10))
        raise AssertionError("unreachable")
