"""Change a gateway's workers through its /workers API: stdlib only (managed host).

Both gateways the role runs (smg 1.13.0 and sglang-router 0.3.2) serve the same API, all
of it behind the gateway's key: GET /workers lists {"workers": [{"id", "url", "is_healthy",
...}]}; POST /workers {"url", "api_key"} answers 202 and adds the worker in the background
(it is listed only once its health check passed); DELETE /workers/<id> answers 202 and
removes it in the background, letting its in-flight requests finish.

What differs (read from the real binaries): smg lists a worker being removed with
"status": "draining" (and is_healthy false) until its requests are done and it is gone, and
answers a POST of a URL it still lists, draining or not, with 409 WORKER_ALREADY_EXISTS.
So a draining worker counts as neither present nor gone here: one wanted back is added
again once smg has let it go.

Prefill/decode (PD) mode, both gateways alike (tried against each real binary started with
--pd-disaggregation and no worker): POST /workers takes "worker_type" ("prefill" or
"decode") and, for a prefill, "bootstrap_port"; GET /workers lists both back with each
worker; /readiness answers 503 until at least one healthy worker of each kind is listed. A
worker is therefore a URL, a type ("regular" when none is listed) and, for a prefill, a
bootstrap port; a listed worker whose type or port is not the wanted one is removed and
added again once gone.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class RouterError(Exception):
    """The router could not be reached or refused a request."""


class Router:
    def __init__(self, base_url, api_key, timeout=10.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", "Bearer " + self.api_key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, OSError) as err:
            raise RouterError(f"{method} {self.base_url}{path}: "
                              f"{getattr(err, 'reason', err)}") from err

    def workers(self):
        """The listed workers as [{"id", "url", "healthy", "draining", "worker_type",
        "bootstrap_port"}], sorted by URL."""
        status, body = self.call("GET", "/workers")
        if status != 200:
            raise RouterError(f"GET /workers answered HTTP {status}: {_short(body)}")
        try:
            listed = json.loads(body)["workers"]
            return sorted(({"id": w["id"], "url": w["url"],
                            "healthy": bool(w.get("is_healthy")) and not _draining(w),
                            "draining": _draining(w),
                            "worker_type": str(w.get("worker_type") or "regular").lower(),
                            "bootstrap_port": w.get("bootstrap_port")} for w in listed),
                          key=lambda w: w["url"])
        except (ValueError, KeyError, TypeError) as err:
            raise RouterError(f"GET /workers: unexpected answer {_short(body)}") from err

    def add(self, url, worker_api_key, worker_type="regular", bootstrap_port=None):
        body = {"url": url}
        if worker_api_key:
            body["api_key"] = worker_api_key
        # A regular worker's body stays what both gateways took before PD mode.
        if worker_type != "regular":
            body["worker_type"] = worker_type
        if bootstrap_port is not None:
            body["bootstrap_port"] = int(bootstrap_port)
        status, answer = self.call("POST", "/workers", body)
        if status not in (200, 201, 202):
            raise RouterError(f"POST /workers {url} answered HTTP {status}: {_short(answer)}")

    def remove(self, worker_id, url):
        status, answer = self.call("DELETE", "/workers/" + worker_id)
        # 404: it went away on its own between the listing and the removal.
        if status not in (200, 202, 204, 404):
            raise RouterError(f"DELETE /workers/{worker_id} ({url}) answered HTTP {status}: "
                              f"{_short(answer)}")


def _draining(worker):
    """smg marks a worker it is removing; sglang-router 0.3.2 lists no status."""
    return str(worker.get("status") or "").lower() == "draining"


def _short(body, limit=300):
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text[:limit]


WORKER_TYPES = ("regular", "prefill", "decode")


def normalise(url):
    return url.strip().rstrip("/")


def wanted_workers(urls):
    """{URL: {"worker_type", "bootstrap_port"}} from plain URLs (regular workers) and/or
    dicts {"url", "worker_type", "bootstrap_port"}. Raises ValueError on a bad entry."""
    wanted = {}
    for entry in urls:
        if isinstance(entry, str):
            entry = {"url": entry}
        url = normalise(str(entry.get("url") or ""))
        kind = str(entry.get("worker_type") or "regular").lower()
        port = entry.get("bootstrap_port")
        if not url:
            raise ValueError(f"a worker without a URL: {entry!r}")
        if kind not in WORKER_TYPES:
            raise ValueError(f"{url}: worker_type {kind!r} is not one of "
                             f"{', '.join(WORKER_TYPES)}")
        if port is not None and kind != "prefill":
            raise ValueError(f"{url}: only a prefill worker has a bootstrap_port")
        spec = {"worker_type": kind, "bootstrap_port": None if port is None else int(port)}
        if wanted.setdefault(url, spec) != spec:
            raise ValueError(f"{url} is wanted twice, as {wanted[url]} and {spec}")
    return wanted


def _matches(worker, spec):
    """Whether a listed worker is of the wanted type (and, a prefill, bootstrap port)."""
    if worker.get("worker_type", "regular") != spec["worker_type"]:
        return False
    return (spec["worker_type"] != "prefill"
            or _port(worker.get("bootstrap_port")) == spec["bootstrap_port"])


def _port(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def plan(listed, urls, state, exclusive=False):
    """(URLs to add, workers to remove) that bring the listing to the wanted state.

    A draining worker (smg) is already on its way out: it is not removed again, and a
    wanted URL still draining is added back only once it is gone (readd). A listed worker
    of the wrong type or bootstrap port is removed, and added back once gone (readd)."""
    wanted = wanted_workers(urls)
    by_url = {normalise(w["url"]): w for w in listed}
    if state == "present":
        add = [u for u in sorted(wanted) if u not in by_url]
        remove = [w for u, w in sorted(by_url.items()) if not w.get("draining") and (
            u in wanted and not _matches(w, wanted[u]) or exclusive and u not in wanted)]
    else:
        add = []
        remove = [by_url[u] for u in sorted(wanted)
                  if u in by_url and not by_url[u].get("draining")]
    return add, remove


def readd(listed, urls):
    """Wanted URLs listed draining (smg) or of the wrong type or bootstrap port: to add
    (back) once they are gone."""
    wanted = wanted_workers(urls)
    by_url = {normalise(w["url"]): w for w in listed}
    return sorted(u for u in wanted if u in by_url and (
        by_url[u].get("draining") or not _matches(by_url[u], wanted[u])))


def settled(listed, urls, state, exclusive=False):
    """Whether the listing shows the wanted state (present: listed, of the wanted type
    and bootstrap port, and healthy)."""
    by_url = {normalise(w["url"]): w for w in listed}
    wanted = wanted_workers(urls)
    if state == "absent":
        return not set(wanted) & set(by_url)
    if exclusive and set(by_url) - set(wanted):
        return False
    return all(u in by_url and by_url[u]["healthy"] and _matches(by_url[u], spec)
               for u, spec in wanted.items())


def _shown(worker):
    kind = "" if worker.get("worker_type", "regular") == "regular" else (
        f"{worker['worker_type']}" + (f" bootstrap {worker['bootstrap_port']}"
                                      if worker.get("bootstrap_port") is not None else "")
        + ", ")
    state = ("draining" if worker.get("draining")
             else "healthy" if worker["healthy"] else "unhealthy")
    return f"{worker['url']} ({kind}{state})"


def converge(router, urls, state, worker_api_key="", exclusive=False, wait=True,
             timeout=300.0, interval=1.0, check_mode=False, clock=time.monotonic,
             sleep=time.sleep):
    """Add or remove workers; with wait, poll until the listing shows the result.

    urls: plain URLs (regular workers) and/or {"url", "worker_type", "bootstrap_port"}.
    Returns (changed, before, after). Raises RouterError on a refusal or a timeout, with
    what the router listed last, and ValueError on a bad wanted worker.
    """
    wanted = wanted_workers(urls)
    before = router.workers()
    add, remove = plan(before, urls, state, exclusive)
    pending = readd(before, urls) if state == "present" else []
    changed = bool(add or remove or pending)
    if check_mode or not changed and not wait:
        return changed, before, before
    for url in add:
        router.add(url, worker_api_key, **wanted[url])
    for worker in remove:
        router.remove(worker["id"], worker["url"])
    after = router.workers()
    if not wait:
        return changed, before, after
    deadline = clock() + timeout
    while not settled(after, urls, state, exclusive):
        if clock() >= deadline:
            shown = ", ".join(_shown(w) for w in after) or "no workers"
            goal = ("listed and healthy" if state == "present" else "gone")
            raise RouterError(
                f"after {timeout:g} s the router's workers are not {goal} for "
                f"{sorted(wanted)}; it lists: {shown}. A worker the "
                "router cannot reach or that is not healthy is never listed (check its "
                "/health and that its API key is the router's)")
        sleep(interval)
        after = router.workers()
        listed = {normalise(w["url"]) for w in after}
        for url in [u for u in pending if u not in listed]:
            router.add(url, worker_api_key, **wanted[url])
            pending.remove(url)
            after = router.workers()
    return changed, before, after
