"""`python -m sglang_sim.launch_server <SGLang argv>`: the simulator's entry point.

Knobs that SGLang has no flag for come from the environment, so the argv stays exactly
the pinned version's:
  SGLANG_SIM_LOAD_SECONDS    weights "load": the port stays closed (default 0)
  SGLANG_SIM_WARMUP_SECONDS  /health answers 503 (default 0)
  SGLANG_SIM_TTFT_MS, SGLANG_SIM_ITL_MS   latency model (default 0)
  SGLANG_SIM_ITL_PER_RUNNING_MS            ITL added per other request in flight (default 0)
  SGLANG_SIM_ACCURACY        chance a worked answer is right (default 1.0)
  SGLANG_SIM_GSM8K           a GSM8K jsonl file, so its questions get their labels
  SGLANG_SIM_SEED            varies which questions are answered wrongly
  SGLANG_SIM_FAIL_AFTER_LOAD an error message: the server dies with it once the weights
                             are "loaded" (exit 1), as SGLang does on a CUDA OOM
  SGLANG_SIM_HANG_AFTER_WARMUP  1: the scheduler hangs as soon as warm-up is done (the
                             SIGUSR1 fault below, from the start: a collective that hangs
                             after the warm-up request)
  SGLANG_HEALTH_CHECK_TIMEOUT  SGLang's own: how long a generation probe waits (default 20)
  SGLANG_SIM_VERSION         the SGLang version to imitate (sim_versions.py; default
                             0.5.6.post1): its flags, rules, endpoints and parsers
  SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT, SGLANG_DISAGGREGATION_WAITING_TIMEOUT
                             SGLang's own: how long a prefill waits for its decode, and
                             a decode for its KV (default 300 each; disaggregation.py)
  SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION  SGLang's own: false makes /health answer 200
                             without generating (so a hung server's /health says 200;
                             /health_generate still fails), as 0.5.6.post1 does

A named test fault, for the watchdog's tests: SIGUSR1 hangs the scheduler (State.hung).
The process and its HTTP server live on, generation never answers, and /health and
/health_generate answer 503 after SGLANG_HEALTH_CHECK_TIMEOUT, as SGLang does when its
scheduler is stuck; only a restart ends it. The real SGLang has no such signal handler:
the toolkit never sends SIGUSR1 (sglang-launch only passes on what it is sent).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from . import __version__, cli, disaggregation, rules, sim_versions
from .answers import Model
from .log import log, server_args_line, set_level
from .server import DEFAULT_HEALTH_CHECK_TIMEOUT, State, Timing, make_server


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _disaggregate(state: State) -> None:
    """A prefill spends the time to first token and no decode step; a decode spends no
    prefill. Like SGLang, the prefill's node 0 opens its bootstrap server while the
    weights still load (the tokenizer manager starts it before the schedulers are up)."""
    args, timing = state.args, state.timing
    if args.disaggregation_mode == "prefill" and args.node_rank == 0:
        state.pd = disaggregation.Prefill(args, timing.ttft_s, _env_float(
            "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT", disaggregation.DEFAULT_TIMEOUT_S))
        timing.ttft_s = timing.itl_s = timing.itl_per_running_s = 0.0
    elif args.disaggregation_mode == "decode" and args.node_rank == 0:
        state.pd = disaggregation.Decode(args, _env_float(
            "SGLANG_DISAGGREGATION_WAITING_TIMEOUT", disaggregation.DEFAULT_TIMEOUT_S))
        timing.ttft_s = 0.0


def main(argv: list[str] | None = None, entry: str = "launch_server") -> int:
    version = sim_versions.current()
    version_rules = sim_versions.rules(version)
    warning = version_rules["entry_point"].get("launch_server_warning")
    if entry == "launch_server" and warning:  # 0.5.23 recommends `sglang serve`
        print(f"{__file__}: UserWarning: {warning}", file=sys.stderr, flush=True)
    args = cli.parse(sys.argv[1:] if argv is None else argv, version)  # unknown flag: exit 2
    errors = sim_versions.normalize(args, version) + rules.check(args)
    errors += disaggregation.check(args, version)
    if errors:
        for error in errors:
            print(f"AssertionError: {error}", file=sys.stderr)
        return 1
    args.enable_dp_attention = rules.effective_dp_attention(args)
    set_level(args.log_level)
    # SGLang 0.5.6.post1 logs every argument at INFO, the API key in clear among them
    # (entrypoints/engine.py, _launch_subprocesses): so does its double.
    log(server_args_line(args), "info")
    print(f"sglang_sim {__version__} (a test double of SGLang {version}, "
          f"not SGLang): rank {args.node_rank}/{args.nnodes}, tp {args.tensor_parallel_size}, "
          f"dp {args.data_parallel_size}, ep {args.expert_parallel_size}, model {args.model_path}", flush=True)
    model = Model(_env_float("SGLANG_SIM_ACCURACY", 1.0),
                  os.environ.get("SGLANG_SIM_SEED", ""),
                  os.environ.get("SGLANG_SIM_GSM8K", ""))
    timing = Timing(_env_float("SGLANG_SIM_TTFT_MS", 0) / 1000,
                    _env_float("SGLANG_SIM_ITL_MS", 0) / 1000,
                    _env_float("SGLANG_SIM_ITL_PER_RUNNING_MS", 0) / 1000)
    state = State(args, model, timing, health_check_timeout=_env_float(
        "SGLANG_HEALTH_CHECK_TIMEOUT", DEFAULT_HEALTH_CHECK_TIMEOUT), version=version,
        endpoints=version_rules["endpoints"],
        health_generates=os.environ.get("SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", "true")
        .strip().lower() not in ("false", "0", "no", "n"))  # environ.py EnvBool
    _disaggregate(state)

    time.sleep(_env_float("SGLANG_SIM_LOAD_SECONDS", 0))
    failure = os.environ.get("SGLANG_SIM_FAIL_AFTER_LOAD", "")
    if failure:
        print(f"Scheduler hit an exception: {failure}", file=sys.stderr, flush=True)
        return 1
    server = make_server(state, args.host, args.port)

    def warm_up() -> None:
        time.sleep(_env_float("SGLANG_SIM_WARMUP_SECONDS", 0))
        state.ready = True
        print("The server is fired up and ready to roll!", flush=True)
        if os.environ.get("SGLANG_SIM_HANG_AFTER_WARMUP", "") == "1":
            hang()

    def drain() -> None:
        # Like SGLang: stop taking work, finish what is in flight (unbounded; the unit's
        # TimeoutStopSec is the bound), then exit.
        state.draining = True
        state.stopping.set()
        while state.inflight:
            time.sleep(0.05)
        server.shutdown()

    def hang() -> None:
        state.hung = True
        print("sglang_sim: SIGUSR1, a test fault: the scheduler hangs until a restart",
              flush=True)

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=drain).start())
    signal.signal(signal.SIGUSR1, lambda *_: hang())
    threading.Thread(target=warm_up, daemon=True).start()
    server.serve_forever()
    print("Drained; exiting.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
