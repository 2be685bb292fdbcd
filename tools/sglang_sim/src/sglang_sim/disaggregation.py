"""Prefill/decode disaggregation, simulated: SGLang 0.5.6.post1's two halves.

What the real thing does (sglang/srt/disaggregation/, 0.5.6.post1):
- The router sends each request to a prefill server AND a decode server at once, with
  `bootstrap_host` (the prefill's host), `bootstrap_port` and a random `bootstrap_room`
  added to the body, and answers the client with the decode server's response.
- A prefill server runs a bootstrap HTTP server on --disaggregation-bootstrap-port
  (managers/disagg_service.py): `GET /health`, and `/route`, where prefill ranks register
  and decode ranks look them up (common/conn.py, _handle_route_get: engine_rank,
  target_dp_group and target_pp_rank all -1 ask for the prefill's parallel layout).
- The decode side asks that server for the prefill's layout and ranks, then the prefill
  pushes the request's KV cache to it over RDMA (mooncake/nixl). Only then does decode
  generate. A prefill whose decode never comes gives up after
  SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT (300 s); a decode whose KV never arrives after
  SGLANG_DISAGGREGATION_WAITING_TIMEOUT (300 s); a decode that cannot reach the bootstrap
  server fails the request with 500 "Decode handshake failed for request ..."
  (decode.py, _update_handshake_waiters).
- Health probes carry the fake bootstrap host 2.2.2.2 and transfer nothing.

The double keeps that protocol and replaces only the RDMA transfer: the prefill keeps a
"KV" record per room (prompt length and digest) and its bootstrap server hands it to the
decode that asks for that room (`GET /sglang_sim/kv/<room>`, a route the real server does
not have). So a router that pairs the wrong halves, a bootstrap port nobody listens on or
a prefill that died mid-request fails the request visibly, as on the real fabric.
Latency: the time to first token is spent on the prefill side, inter-token latency on the
decode side.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .log import log

FAKE_BOOTSTRAP_HOST = "2.2.2.2"  # disaggregation/utils.py
DEFAULT_TIMEOUT_S = 300.0  # SGLANG_DISAGGREGATION_{BOOTSTRAP,WAITING}_TIMEOUT
GENERATION_ROUTES = ("/generate", "/v1/chat/completions")
KV_ROUTE = "/sglang_sim/kv/"


def check(args: Any, version: str) -> list[str]:
    """The start-time assertions of ServerArgs._handle_disaggregation (0.5.6.post1).
    0.5.23 checks other things (srt/arg_groups/pd_disaggregation_hook.py); the double
    imitates one, the prefill's refusal of the fake transfer backend."""
    errors: list[str] = []
    if version == "0.5.23":
        # srt/arg_groups/pd_disaggregation_hook.py:145-148.
        if args.disaggregation_mode == "prefill" and args.disaggregation_transfer_backend == "fake":
            errors.append("Prefill server does not support 'fake' as the transfer backend")
        return errors
    if version != "0.5.6.post1":
        return errors
    if args.disaggregation_mode == "decode":
        if args.disaggregation_decode_tp is not None:
            errors.append("Cannot set --disaggregation-decode-tp for the decode engine.")
        if args.disaggregation_decode_dp is not None:
            errors.append("Cannot set --disaggregation-decode-dp for the decode engine.")
        if args.data_parallel_size > 1 and not args.prefill_round_robin_balance:
            errors.append(
                "Prefill round robin balance is required when dp size > 1. Please make sure "
                "that the prefill instance is launched with `--load-balance-method "
                "round_robin` and `--prefill-round-robin-balance` is set for decode server.")
    elif args.disaggregation_mode == "prefill":
        prefill_tp = args.tensor_parallel_size
        decode_tp = args.disaggregation_decode_tp or prefill_tp
        if max(prefill_tp, decode_tp) % min(prefill_tp, decode_tp) != 0:
            errors.append("Different tp size is supported only when one tp is multiple of "
                          f"the other. decode_tp={decode_tp}, prefill_tp={prefill_tp}")
    return errors


def prompt_digest(body: dict[str, Any]) -> str:
    """What both halves hash to agree they hold the same request."""
    prompt = body.get("text", body.get("input_ids", body.get("messages")))
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()


@dataclass
class _Room:
    record: dict[str, Any]
    ready_at: float
    taken: threading.Event = field(default_factory=threading.Event)


class Prefill:
    """The prefill half: a bootstrap server, and a KV record per room for its decode."""

    def __init__(self, args: Any, ttft_s: float, timeout_s: float) -> None:
        self.args = args
        self.ttft_s = ttft_s
        self.timeout_s = timeout_s
        self.rooms: dict[int, _Room] = {}
        self.lock = threading.Condition()
        self.server = _bootstrap_server(self, args.host, args.disaggregation_bootstrap_port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        log(f"Bootstrap server started on {args.host}:{args.disaggregation_bootstrap_port}",
            "info")

    def admit(self, body: dict[str, Any]) -> str | None:
        """Prefill the prompt, then hold the request until its decode took the KV."""
        if body.get("bootstrap_host") == FAKE_BOOTSTRAP_HOST:
            return None
        room_id = body.get("bootstrap_room")
        room = _Room({"room": room_id, "prompt_digest": prompt_digest(body),
                      "prefill": f"{self.args.host}:{self.args.port}"},
                     time.monotonic() + self.ttft_s)
        with self.lock:
            self.rooms[room_id] = room
            self.lock.notify_all()
        try:
            if room.taken.wait(self.timeout_s):
                return None
            log("Some requests timed out when bootstrapping, which means prefill instances "
                "fail to receive the KV indices from the decode instance of this request.")
            return (f"Request {room_id} timed out after {self.timeout_s:.1f}s in "
                    "KVPoll.Bootstrapping")
        finally:
            with self.lock:
                self.rooms.pop(room_id, None)

    def hand_over(self, room_id: int, wait_s: float) -> dict[str, Any] | None:
        """The bootstrap server's side of the transfer: the room's record once prefilled."""
        deadline = time.monotonic() + wait_s
        with self.lock:
            while room_id not in self.rooms:
                if not self.lock.wait(max(0.0, deadline - time.monotonic())):
                    return None
            room = self.rooms[room_id]
        time.sleep(max(0.0, room.ready_at - time.monotonic()))
        room.taken.set()
        return room.record

    def layout(self) -> dict[str, int]:
        args = self.args
        return {"prefill_attn_tp_size": args.tensor_parallel_size // (
                    args.data_parallel_size if args.enable_dp_attention else 1),
                "prefill_dp_size": args.data_parallel_size,
                "prefill_pp_size": args.pipeline_parallel_size}


class Decode:
    """The decode half: before generating, fetch the room's KV from its prefill."""

    def __init__(self, args: Any, timeout_s: float) -> None:
        self.args = args
        self.timeout_s = timeout_s

    def admit(self, body: dict[str, Any]) -> str | None:
        host = body.get("bootstrap_host")
        if host == FAKE_BOOTSTRAP_HOST:
            return None
        room_id = body.get("bootstrap_room")
        failure = (f"Decode handshake failed for request rank=0 "
                   f"decode_req.req.rid={body.get('rid')!r} "
                   f"decode_req.req.bootstrap_room={room_id!r}")
        address = f"{host}:{body.get('bootstrap_port')}"
        try:
            _get(f"http://{address}/route?engine_rank=-1&target_dp_group=-1"
                 "&target_pp_rank=-1", 5)
        except (OSError, ValueError) as error:
            log(f"Error fetching prefill info from bootstrap: {error}", "error")
            return f"{failure} with exception {error}"
        try:
            record = _get(f"http://{address}{KV_ROUTE}{room_id}?wait={self.timeout_s}",
                          self.timeout_s + 5)
        except (OSError, ValueError) as error:
            log("Some requests fail to receive KV Cache transfer done signal after "
                "bootstrapping.")
            return f"{failure} with exception {error}"
        if record.get("prompt_digest") != prompt_digest(body):
            return f"{failure} with exception the prefill's KV is for another prompt"
        return None


def _get(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _bootstrap_server(prefill: Prefill, host: str, port: int) -> ThreadingHTTPServer:
    class Bootstrap(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/health":
                return self._reply(200, "OK")
            if url.path == "/route":
                keys = ("engine_rank", "target_dp_group", "target_pp_rank")
                if not all(query.get(k) for k in keys):
                    return self._reply(400, "Missing inputs for bootstrap server.")
                if all(query[k] == "-1" for k in keys):
                    return self._reply(200, prefill.layout())
                return self._reply(200, {"rank_ip": prefill.args.host,
                                         "rank_port": prefill.args.port})
            if url.path.startswith(KV_ROUTE):
                record = prefill.hand_over(int(url.path[len(KV_ROUTE):]),
                                           float(query.get("wait", 5)))
                if record is None:
                    return self._reply(404, "no such bootstrap room")
                return self._reply(200, record)
            return self._reply(404, "Not Found")

    server = type("BootstrapServer", (ThreadingHTTPServer,), {"request_queue_size": 1024})(
        (host, port), Bootstrap)
    server.daemon_threads = True
    return server
