"""`systemctl show` read: the one parser of its output for the modules that ask systemd
about units (host_state, unit_health). Stdlib only: this runs on the managed host."""
from __future__ import annotations


def parse_show(text: str, units: list[str],
               properties: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """unit -> {property: value} from `systemctl show -p A,B unit1 unit2`, which prints
    one block per unit, in order, separated by blank lines. A property systemd did not
    print reads as ''."""
    blocks = text.strip("\n").split("\n\n")
    out = {}
    for unit, block in zip(units, blocks):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[unit] = {key: props.get(key, "") for key in properties}
    return out
