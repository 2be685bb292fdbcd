"""Requests to the servers under test, and steady chat traffic while a test changes the
servers behind it (Molecule's fleet and pd)."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

QUESTION = {"model": "moonshotai/Kimi-K2-Instruct", "max_tokens": 16,
            "messages": [{"role": "user", "content": "What is 6 times 7?"}]}


def request(url: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    """One request with the API key (a POST when there is a body): status and JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, {}


def chat(url: str, key: str) -> int | str:
    """One chat completion at server URL: its HTTP status, or the error's name when the
    connection was refused or reset (a failed request all the same)."""
    try:
        return request(f"{url}/v1/chat/completions", key, QUESTION)[0]
    except OSError as exc:
        reason = getattr(exc, "reason", exc)  # urlopen wraps what the socket raised
        return type(reason if isinstance(reason, Exception) else exc).__name__


class Traffic:
    """Chat requests to URL from 4 threads, each ~4 a second, for as long as the with-block
    runs (bounded: 20 min, so a hung test cannot keep it going). A server out of the router
    or restarting for even half a second fails some of them; a faster stream would only cost
    the two test cores."""

    def __init__(self, url: str, key: str, threads: int = 4, bound_s: float = 1200) -> None:
        self.url, self.key, self.bound_s = url, key, bound_s
        self.statuses: list[int | str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.bound_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.statuses.append(chat(self.url, self.key))
            time.sleep(0.25)

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    @property
    def failed(self) -> list:
        return [s for s in self.statuses if s != 200]
