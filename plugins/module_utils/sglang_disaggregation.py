"""Prefill/decode disaggregation, DeepEP and EPLB for one SGLang server (issue 17).

Pure functions on the controller. What differs between versions is read from each
version's rules file (manifests/sglang/<version>.rules.json, "disaggregation", through
module_utils/sglang_versions.py). plugins/filter/sglang_launch.py appends disaggregation_argv()
to the launch command and problems() to its list (after which argv_problems checks every
flag against the pinned version's manifest, as for any other); the role's environment
takes environment(); the preflight takes topology_problems() across hosts.

The rules, each from the pinned versions' code (file:line in site-packages/sglang):
- DeepEP spans every rank: SGLang sets ep_size = tp_size without asking (0.5.6.post1
  srt/server_args.py:1587-1595, _handle_a2a_moe; 0.5.23 srt/arg_groups/overrides.py:
  1611-1620, _a2a_ep_size), so an inventory saying otherwise would not describe what
  runs: refused.
- EPLB needs expert parallelism: `assert self.ep_size > 1` (0.5.6.post1
  server_args.py:1621-1622; 0.5.23 arg_groups/parallel_hook.py:790-791).
- Physical experts (Kimi-K2's 384 routed ones plus the redundant ones) are spread
  evenly over the EP ranks: `assert num_physical_experts % ep_size == 0` (0.5.6.post1
  srt/eplb/expert_location.py:198-203; 0.5.23 the same file, :234-256).
- SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK <= 1024 (0.5.6.post1
  srt/layers/moe/token_dispatcher/deepep.py:320-325: DeepEP's low-latency tag space):
  a range rule in plugins/filter/settings.py.
- A decode server with dp > 1 on 0.5.6.post1 refuses to start without
  --prefill-round-robin-balance, which promises that the prefill assigned requests to
  its DP ranks round robin (`--load-balance-method round_robin`, its default there):
  server_args.py:1868-1873. The builder renders the flag on such decode servers and
  refuses a prefill that sets another load-balance method. 0.5.23 has no such flag: a
  prefill's `auto` balance resolves to follow_bootstrap_room, which the decode follows
  (arg_groups/serving_hook.py:217-236): nothing to render.
- --disaggregation-decode-tp / --disaggregation-decode-dp are refused on a decode server
  (0.5.6.post1 server_args.py:1857-1863).
- 0.5.23 refuses the `fake` transfer backend on a prefill server
  (arg_groups/pd_disaggregation_hook.py:145-148).
- The bootstrap port (a prefill's node 0 serves the KV bootstrap server on it:
  0.5.6.post1 srt/managers/disagg_service.py:30, 0.5.23 :47) collides with: the API
  --port; the dist-init port and the ports SGLang derives from it with dp-attention
  (port_base = dist_init_port + 1 and port_base + 1..+5: 0.5.6.post1
  server_args.py:4503-4512; 0.5.23 server_args.py:837-849); with dp-attention on a
  single node without --dist-init-addr the same block at --port + 233
  (ZMQ_TCP_PORT_DELTA, 0.5.6.post1 server_args.py:4428, :4491-4492; 0.5.23 :728,
  :819-822); and on 0.5.6.post1 the NCCL port it draws from --port + 100..1000
  (server_args.py:4459-4467); and the other ports the toolkit binds on the host
  (host_ports: model_weights_peer_port where the host stages weights).
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_versions

MODES = ("", "prefill", "decode")
# Transfer backends that move the KV cache over RDMA NICs (--disaggregation-ib-device):
# mooncake_tcp (0.5.23) forces TCP and drops the device (pd_disaggregation_hook.py:30-41),
# fake moves nothing, ascend is Huawei's.
RDMA_BACKENDS = ("mooncake", "nixl", "mori")
# The MoE all-to-all backends the toolkit renders (Kimi-K2 on H200).
A2A_BACKENDS = ("none", "deepep")
KIMI_K2_ROUTED_EXPERTS = 384  # config.json n_routed_experts
# Where the bootstrap port would meet a port SGLang derives (module docstring).
ZMQ_TCP_PORT_DELTA = 233
DERIVED_SPAN = 6  # dist_init_port .. port_base + 5

_DEVICE = re.compile(r"^[A-Za-z0-9_.:-]+$")

# Flags these settings own: extra args may not set them too.
OWNED = {
    "--disaggregation-mode": "sglang_service_disaggregation_mode",
    "--disaggregation-transfer-backend": "sglang_service_disaggregation_transfer_backend",
    "--disaggregation-ib-device": "sglang_service_disaggregation_ib_devices",
    "--disaggregation-bootstrap-port": "sglang_service_disaggregation_bootstrap_port",
    "--moe-a2a-backend": "sglang_service_moe_a2a_backend",
    "--deepep-mode": "sglang_service_deepep_mode",
    "--enable-eplb": "sglang_service_eplb_enabled",
    "--ep-num-redundant-experts": "sglang_service_ep_num_redundant_experts",
    "--prefill-round-robin-balance": ("sglang_service_disaggregation_mode (rendered on a "
                                      "decode server with dp > 1 where the version needs it)"),
}


def mode(r: Mapping[str, Any]) -> str:
    value = r.get("disaggregation_mode")
    return "" if value in (None, "null") else str(value)


def _devices(r: Mapping[str, Any]) -> list[str]:
    value = r.get("disaggregation_ib_devices") or []
    if isinstance(value, str):
        value = [value]
    return [str(d) for d in value]


def _true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _backend(r: Mapping[str, Any]) -> str:
    return str(r.get("disaggregation_transfer_backend") or "mooncake")


def _a2a(r: Mapping[str, Any]) -> str:
    return str(r.get("moe_a2a_backend") or "none")


def _facts(r: Mapping[str, Any]) -> dict[str, Any]:
    """The pinned version's PD facts (its rules file's "disaggregation"; none: {})."""
    return dict(sglang_versions.rules(str(r.get("sglang_version"))).get("disaggregation") or {})


def _choices(options: Mapping[str, Any], flag: str) -> list[str] | None:
    option = options.get(flag)
    return None if option is None else option.get("choices")


def disaggregation_argv(r: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """The PD, DeepEP and EPLB flags of a resolved deployment (options: the pinned
    version's manifest, flag -> entry). Monolithic with no DeepEP or EPLB: nothing."""
    argv: list[str] = []
    role = mode(r)
    if role:
        argv += ["--disaggregation-mode", role,
                 "--disaggregation-transfer-backend", _backend(r)]
        devices = _devices(r)
        if devices:
            argv += ["--disaggregation-ib-device", ",".join(devices)]
        if role == "prefill":
            argv += ["--disaggregation-bootstrap-port", str(r.get("disaggregation_bootstrap_port"))]
        decode_dp_flag = _facts(r).get("decode_dp_flag")
        if (role == "decode" and int(r.get("dp_size") or 1) > 1 and decode_dp_flag
                and decode_dp_flag in options):
            argv.append(decode_dp_flag)
    a2a = _a2a(r)
    if a2a != "none":
        argv += ["--moe-a2a-backend", a2a]
        if a2a == "deepep":
            argv += ["--deepep-mode", str(r.get("deepep_mode") or "auto")]
    if _true(r.get("eplb_enabled")):
        argv.append("--enable-eplb")
    redundant = _int(r.get("ep_num_redundant_experts")) or 0
    if redundant > 0:
        argv += ["--ep-num-redundant-experts", str(redundant)]
    return argv


def _choice_problems(r: Mapping[str, Any], options: Mapping[str, Any], version: str) -> list[str]:
    out = []
    role = mode(r)
    if role not in MODES:
        return [f"sglang_service_disaggregation_mode {role!r} is not one of '' (monolithic), "
                "prefill or decode"]
    backends = _choices(options, "--disaggregation-transfer-backend") or []
    if role and _backend(r) not in backends:
        out.append(f"sglang_service_disaggregation_transfer_backend {_backend(r)!r} is not a "
                   f"transfer backend of SGLang {version}: choose one of {backends}")
    a2a_choices = [c for c in _choices(options, "--moe-a2a-backend") or ["none"]
                   if c in A2A_BACKENDS]
    if _a2a(r) not in a2a_choices:
        out.append(f"sglang_service_moe_a2a_backend {_a2a(r)!r} is not one the toolkit renders "
                   f"for SGLang {version}: choose one of {a2a_choices}")
    modes = _choices(options, "--deepep-mode") or []
    if _a2a(r) == "deepep" and str(r.get("deepep_mode") or "auto") not in modes:
        out.append(f"sglang_service_deepep_mode {r.get('deepep_mode')!r} is not a DeepEP mode "
                   f"of SGLang {version}: choose one of {sorted(modes)}")
    return out


def _bootstrap_problems(r: Mapping[str, Any], version: str) -> list[str]:
    value = r.get("disaggregation_bootstrap_port")
    port = _int(value)
    if port is None:
        return ["a prefill server needs a bootstrap port (the router sends it to the decode "
                "servers with every request): set sglang_service_disaggregation_bootstrap_port "
                "(SGLang's default is 8998)"]
    if not 0 < port < 65536:
        return []  # the range rule (plugins/filter/settings.py) names it
    api = _int(r.get("port"))
    taken: list[tuple[int, int, str]] = []
    if api is not None:
        taken.append((api, api, "sglang_service_port"))
    dp_attention = _true(r.get("dp_attention_enabled")) and int(r.get("dp_size") or 1) > 1
    nnodes = int(r.get("nnodes") or 1)
    dist = _int(r.get("dist_init_port"))
    if nnodes > 1 and dist is not None:
        high = dist + DERIVED_SPAN if dp_attention else dist
        taken.append((dist, high, "sglang_service_dist_init_port (the rendezvous"
                      + (" and the ports SGLang derives from it with dp-attention)" if dp_attention
                         else ")")))
    elif dp_attention and api is not None:
        base = api + ZMQ_TCP_PORT_DELTA
        taken.append((base, base + DERIVED_SPAN, "sglang_service_port + 233 (the ports SGLang "
                      "derives with dp-attention on a single node)"))
    draw = _facts(r).get("nccl_port_draw")
    if draw and api is not None:
        taken.append((api + draw[0], api + draw[1], f"sglang_service_port + {draw[0]}..{draw[1]} "
                      f"(where SGLang {version} draws its NCCL port)"))
    # The host's other ports the toolkit binds (the weights' rsync daemon while staging).
    for name, value in sorted((r.get("host_ports") or {}).items()):
        if _int(value) is not None:
            taken.append((_int(value), _int(value), name))
    return [f"sglang_service_disaggregation_bootstrap_port {port} collides with {what} "
            f"({low}" + (f"-{high})" if high != low else ")") + ": choose another port"
            for low, high, what in taken if low <= port <= high]


def _layout_problems(r: Mapping[str, Any]) -> list[str]:
    out = []
    tp, ep = int(r.get("tp_size") or 1), int(r.get("ep_size") or 1)
    if _a2a(r) == "deepep" and ep != tp:
        out.append(f"DeepEP (sglang_service_moe_a2a_backend: deepep) spans every rank: SGLang "
                   f"sets ep to tp ({tp}) itself; set sglang_service_ep_size to {tp} "
                   "(DeepEP also needs its own build on the hosts)")
    if _true(r.get("eplb_enabled")) and ep <= 1:
        out.append("EPLB (sglang_service_eplb_enabled) balances experts over EP ranks and needs "
                   "ep > 1: set sglang_service_ep_size above 1, or turn EPLB off")
    redundant = _int(r.get("ep_num_redundant_experts")) or 0
    physical = KIMI_K2_ROUTED_EXPERTS + redundant
    if redundant > 0 and ep > 0 and physical % ep:
        fits = next(n for n in range(redundant, redundant + ep + 1)
                    if (KIMI_K2_ROUTED_EXPERTS + n) % ep == 0)
        out.append(f"sglang_service_ep_num_redundant_experts {redundant}: Kimi-K2's "
                   f"{KIMI_K2_ROUTED_EXPERTS} experts plus {redundant} redundant ones "
                   f"({physical}) do not split over ep {ep}: set it to a value that does "
                   f"(e.g. {fits})")
    return out


def _device_problems(r: Mapping[str, Any]) -> list[str]:
    devices = _devices(r)
    bad = [d for d in devices if not _DEVICE.match(d)]
    if bad:
        return [f"sglang_service_disaggregation_ib_devices has {bad}: name each RDMA device "
                "(e.g. mlx5_0) as one list item"]
    if _backend(r) in RDMA_BACKENDS and not devices:
        return [f"the {_backend(r)} transfer backend moves the KV cache over RDMA, and no "
                "device is named for this host: set sglang_service_disaggregation_ib_devices "
                "in its host_vars (its RDMA NICs, e.g. [mlx5_0, mlx5_1]), or choose another "
                "sglang_service_disaggregation_transfer_backend"]
    return []


def _extra_problems(r: Mapping[str, Any], version: str) -> list[str]:
    """Flags in extra_args that break the halves' contract."""
    out = []
    extra = [str(a) for a in r.get("extra_args") or []]
    flags = [t.partition("=")[0] for t in extra]
    for flag in flags:
        if flag in OWNED:
            out.append(f"sglang_service_extra_args sets {flag}: use {OWNED[flag]} instead")
    role = mode(r)
    if role == "decode":
        for flag in ("--disaggregation-decode-tp", "--disaggregation-decode-dp"):
            if flag in flags:
                out.append(f"sglang_service_extra_args sets {flag}, which SGLang refuses on a "
                           "decode server: remove it")
    balance = _facts(r).get("prefill_load_balance")
    if role == "prefill" and balance and "--load-balance-method" in flags:
        at = flags.index("--load-balance-method")
        token = extra[at]
        value = token.partition("=")[2] or (extra[at + 1] if at + 1 < len(extra) else "")
        if value not in balance:
            out.append(f"sglang_service_extra_args sets --load-balance-method {value} on a "
                       f"prefill server: SGLang {version}'s decode servers find a request's "
                       f"DP rank only with {' or '.join(balance)}; remove it")
    return out


def problems(r: Mapping[str, Any], options: Mapping[str, Any], version: str) -> list[str]:
    """Every reason the PD, DeepEP and EPLB settings of this resolved deployment cannot
    start, each naming the variable to change."""
    out = _choice_problems(r, options, version)
    role = mode(r)
    if role not in MODES:
        return out
    if role:
        out += _device_problems(r)
    if role == "prefill":
        out += _bootstrap_problems(r, version)
        if _backend(r) in (_facts(r).get("prefill_refused_backends") or []):
            out.append(f"SGLang {version} refuses the {_backend(r)} transfer backend on a "
                       "prefill server: set sglang_service_disaggregation_transfer_backend to "
                       "another one")
    return out + _layout_problems(r) + _extra_problems(r, version)


def environment(ib_devices: Any, max_dispatch_tokens: Any = None) -> dict[str, str]:
    """The environment PD and DeepEP add to the server's: NCCL_IB_HCA names the host's
    RDMA NICs (NCCL, DeepEP's too, uses only these), and the DeepEP dispatch buffer's
    tokens per rank where set."""
    env: dict[str, str] = {}
    devices = _devices({"disaggregation_ib_devices": ib_devices})
    if devices:
        env["NCCL_IB_HCA"] = ",".join(devices)
    tokens = _int(max_dispatch_tokens)
    if tokens is not None:
        env["SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK"] = str(tokens)
    return env


def topology_problems(host: str, role: Any, member_of: Iterable[str],
                      routers: Iterable[Mapping[str, Any]]) -> list[str]:
    """A PD host against the routers' pools, before any host is touched.

    host: this host; role: its sglang_service_disaggregation_mode; member_of: its groups
    (group_names); routers: [{host, prefill_group, decode_group}] of every router host.
    Refused: a host in a prefill pool and a decode pool; a host whose pool (prefill or
    decode) no router names; a host in a pool of the other kind than its mode.
    """
    role = mode({"disaggregation_mode": role})
    groups = set(member_of)
    prefill = {(r.get("prefill_group"), r.get("host")) for r in routers
               if r.get("prefill_group") in groups}
    decode = {(r.get("decode_group"), r.get("host")) for r in routers
              if r.get("decode_group") in groups}
    out = []
    if prefill and decode:
        out.append(f"{host} is in the prefill pool {sorted(prefill)[0][0]} (router "
                   f"{sorted(prefill)[0][1]}'s sglang_router_prefill_group) and in the decode "
                   f"pool {sorted(decode)[0][0]} (router {sorted(decode)[0][1]}'s "
                   "sglang_router_decode_group): a node serves one half; remove it from one "
                   "of the two groups")
        return out
    pools = {"prefill": prefill, "decode": decode}
    if role and not pools[role]:
        out.append(f"{host} is a {role} server (sglang_service_disaggregation_mode: {role}) but "
                   f"no router's sglang_router_{role}_group names a group it is in: set "
                   f"sglang_router_{role}_group on a router host (sglang_routers) to its pool, "
                   "or set sglang_service_disaggregation_mode to '' for a monolithic server")
    for kind, found in pools.items():
        if found and role != kind:
            group, router = sorted(found)[0]
            out.append(f"{host} is in {group}, router {router}'s sglang_router_{kind}_group, "
                       f"but its sglang_service_disaggregation_mode is {role!r}: set it to "
                       f"{kind} in the group_vars of {group}")
    return out
