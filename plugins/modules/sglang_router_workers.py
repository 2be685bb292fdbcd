#!/usr/bin/python
"""Ansible module: add or remove a gateway's (smg or sglang-router) workers through its /workers API."""
from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_router_workers
short_description: Add or remove the workers of a running smg or sglang-router gateway
description:
  - Talks to the /workers API of smg (1.13) or sglang-router (0.3.x), stdlib only. C(present) POSTs every
    URL the router does not list, with the worker API key; C(absent) finds each listed URL's
    worker id and DELETEs it. The router does both in the background; with I(wait) the
    module polls GET /workers until every URL is listed and healthy (present) or gone
    (absent), and fails after I(timeout) seconds naming what the router lists.
  - A removed worker finishes its in-flight requests; this is how a rolling change drains
    a server group from the router before stopping it, and re-adds it afterwards.
  - smg lists a worker it is removing as C(draining) until it is gone, and refuses to add
    a URL it still lists; such a worker counts as not present, and one wanted back is added
    again once smg has let it go (with I(wait) only).
  - In prefill/decode mode (a gateway started with C(--pd-disaggregation)) each worker has a
    type (prefill or decode), and a prefill its bootstrap port; give them in I(workers).
    A listed worker of another type or bootstrap port than wanted is removed and, once
    gone, added as wanted (with I(wait) only).
  - Check mode reads the listing and reports what would change.
options:
  router_url:
    description: The router's base URL, e.g. http://127.0.0.1:30080.
    type: str
    required: true
  api_key:
    description:
      - The gateway's API key (its --api-key). Also sent as each added worker's
        key; router and workers share one key.
    type: str
    required: true
    no_log: true
  urls:
    description:
      - Worker base URLs (rank 0 of each server), e.g. http://10.10.1.11:30000, as regular
        workers. With C(absent), whatever their type.
      - Exactly one of I(urls) and I(workers) is given.
    type: list
    elements: str
  workers:
    description:
      - The workers with their type: what a prefill/decode gateway needs.
    type: list
    elements: dict
    suboptions:
      url:
        description: The worker's base URL (rank 0 of its server).
        type: str
        required: true
      worker_type:
        description: C(prefill) or C(decode) behind a PD gateway, C(regular) otherwise.
        type: str
        choices: [regular, prefill, decode]
        default: regular
      bootstrap_port:
        description:
          - A prefill worker's bootstrap port (its --disaggregation-bootstrap-port), which
            the gateway hands to the decode side. Only with C(prefill).
        type: int
  state:
    description: C(present) to have the URLs served, C(absent) to drain them away.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description: With C(present), also remove every listed worker not in I(urls).
    type: bool
    default: false
  wait:
    description: Poll until the router's listing shows the result.
    type: bool
    default: true
  timeout:
    description: Seconds I(wait) may take.
    type: float
    default: 300
  request_timeout:
    description: Seconds per HTTP request.
    type: float
    default: 10
"""

EXAMPLES = r"""
- name: Drain a server from the router before restarting it
  kimi_k2.sglang.sglang_router_workers:
    router_url: http://127.0.0.1:30080
    api_key: "{{ sglang_router_api_key }}"
    urls:
      - http://10.10.1.11:30000
    state: absent
  delegate_to: router-1

- name: Give a PD gateway its prefill and decode workers, and nothing else
  kimi_k2.sglang.sglang_router_workers:
    router_url: http://127.0.0.1:30080
    api_key: "{{ sglang_router_api_key }}"
    workers:
      - url: http://10.10.3.11:30000
        worker_type: prefill
        bootstrap_port: 8998
      - url: http://10.10.4.11:30000
        worker_type: decode
    exclusive: true
  delegate_to: router-pd

- name: Serve it again once it is healthy
  kimi_k2.sglang.sglang_router_workers:
    router_url: http://127.0.0.1:30080
    api_key: "{{ sglang_router_api_key }}"
    urls:
      - http://10.10.1.11:30000
    timeout: 600
  delegate_to: router-1
"""

RETURN = r"""
before:
  description:
    - The router's workers before the change (id, url, healthy, draining, worker_type,
      bootstrap_port), sorted by URL.
  type: list
  elements: dict
  returned: always
  sample: [{id: 4e31b54e-02c5-4029-b11e-d2ff81cdfbc7, url: "http://10.10.1.11:30000", healthy: true, draining: false,
            worker_type: regular, bootstrap_port: null}]
after:
  description: The workers after the change (after the wait, when I(wait)).
  type: list
  elements: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_router import Router, RouterError, converge


def main():
    module = AnsibleModule(
        argument_spec={
            "router_url": {"type": "str", "required": True},
            "api_key": {"type": "str", "required": True, "no_log": True},
            "urls": {"type": "list", "elements": "str"},
            "workers": {"type": "list", "elements": "dict", "options": {
                "url": {"type": "str", "required": True},
                "worker_type": {"type": "str", "default": "regular",
                                "choices": ["regular", "prefill", "decode"]},
                "bootstrap_port": {"type": "int"},
            }},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "exclusive": {"type": "bool", "default": False},
            "wait": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 300},
            "request_timeout": {"type": "float", "default": 10},
        },
        mutually_exclusive=[("urls", "workers")],
        required_one_of=[("urls", "workers")],
        supports_check_mode=True,
    )
    p = module.params
    router = Router(p["router_url"], p["api_key"], p["request_timeout"])
    wanted = p["urls"] if p["urls"] is not None else p["workers"]
    try:
        changed, before, after = converge(
            router, wanted, p["state"], worker_api_key=p["api_key"],
            exclusive=p["exclusive"], wait=p["wait"], timeout=p["timeout"],
            check_mode=module.check_mode)
    except (RouterError, ValueError) as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=changed, before=before, after=after)


if __name__ == "__main__":
    main()
