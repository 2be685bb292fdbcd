"""`python -m sglang_sim.serve <SGLang argv>`: the simulator as `sglang serve`, the entry
point SGLang 0.5.23 recommends (sglang/cli/serve.py). The same server as
sglang_sim.launch_server, without launch_server's warning; see launch_server for knobs.
"""
from __future__ import annotations

import sys

from .launch_server import main

if __name__ == "__main__":
    sys.exit(main(entry="serve"))
