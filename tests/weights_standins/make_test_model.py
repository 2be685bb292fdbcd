"""Write a small, format-correct model directory for weight-staging tests.

The shards are real safetensors files (8-byte little-endian header length, JSON
header, raw tensor data) with a `model.safetensors.index.json` laid out like a
sharded Hugging Face model, so staging code and checksum checks see the same
shape of repository as with Kimi-K2, only megabytes instead of a terabyte.
The tensor values are pseudo-random, NOT trained weights.

Stdlib only, deterministic: the same arguments always give identical bytes.

    python3 make_test_model.py --out DIR [--shards 4] [--shard-mib 8] [--seed 0]
"""
import argparse
import json
import random
import struct
from pathlib import Path

WIDTH = 256  # columns of every tensor; rows are chosen to reach the shard size
DTYPE_BYTES = 2  # BF16
# Clearing the top exponent bit of each BF16 high byte keeps |value| < 2:
# random bytes would otherwise include NaN and Inf, which no real checkpoint has.
_FINITE_BF16 = bytes(b & 0xBF for b in range(256))


def _tensor_bytes(rng: random.Random, n: int) -> bytes:
    data = bytearray(rng.randbytes(n))
    data[1::2] = data[1::2].translate(_FINITE_BF16)  # little-endian: odd bytes are high
    return bytes(data)


def _shard(index: int, shard_bytes: int, seed: int) -> tuple[bytes, dict[str, int]]:
    """One safetensors file as bytes, and {tensor name: data size}."""
    rows = max(2, shard_bytes // (DTYPE_BYTES * WIDTH))
    layer = f"model.layers.{index}"
    shapes = {f"{layer}.mlp.down_proj.weight": [rows - rows // 2, WIDTH],
              f"{layer}.self_attn.o_proj.weight": [rows // 2, WIDTH]}
    rng = random.Random(seed * 1_000_003 + index)  # a distinct stream per shard
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, sizes, offset = [], {}, 0
    for name in sorted(shapes):  # data laid out contiguously in header-key order
        size = shapes[name][0] * shapes[name][1] * DTYPE_BYTES
        header[name] = {"dtype": "BF16", "shape": shapes[name],
                        "data_offsets": [offset, offset + size]}
        blobs.append(_tensor_bytes(rng, size))
        sizes[name] = size
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the reference writer pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + b"".join(blobs), sizes


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_model(out: Path, shards: int = 4, shard_bytes: int = 8 << 20, seed: int = 0) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        data, sizes = _shard(i - 1, shard_bytes, seed)
        (out / name).write_bytes(data)
        weight_map.update(dict.fromkeys(sizes, name))
        total += sum(sizes.values())
    _write_json(out / "model.safetensors.index.json",
                {"metadata": {"total_size": total}, "weight_map": weight_map})
    _write_json(out / "config.json", {
        "architectures": ["StandinForCausalLM"], "model_type": "standin",
        "num_hidden_layers": shards, "hidden_size": WIDTH, "torch_dtype": "bfloat16",
        "standin_seed": seed})
    _write_json(out / "generation_config.json", {"do_sample": True, "temperature": 0.6})
    _write_json(out / "tokenizer_config.json", {"model_max_length": 4096})
    (out / "README.md").write_text(
        "# Generated test model\n\n"
        "Written by tests/weights_standins/make_test_model.py for weight-staging tests.\n"
        "The safetensors shards hold pseudo-random numbers, not real weights: do not serve them.\n"
        f"shards={shards} shard_bytes={shard_bytes} seed={seed}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mib", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_model(args.out, args.shards, int(args.shard_mib * (1 << 20)), args.seed)


if __name__ == "__main__":
    main()
