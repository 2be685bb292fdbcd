"""The generated test model is real safetensors, indexed like a Hub model, and reproducible."""
import json
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
from make_test_model import write_model  # tests/weights_standins, on the path (pytest.ini)


def read_header(path: Path) -> tuple[int, dict]:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return length, json.loads(f.read(length))


def test_shards_are_valid_safetensors_and_indexed(tmp_path):
    write_model(tmp_path, shards=3, shard_bytes=256 << 10, seed=7)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert [p.name for p in shards] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    seen, total = {}, 0
    for shard in shards:
        length, header = read_header(shard)
        assert header.pop("__metadata__") == {"format": "pt"}
        ends = []
        for name, tensor in header.items():
            start, end = tensor["data_offsets"]
            count = tensor["shape"][0] * tensor["shape"][1]
            assert tensor["dtype"] == "BF16" and end - start == 2 * count
            ends.append(end)
            total += end - start
            seen[name] = shard.name
        assert shard.stat().st_size == 8 + length + max(ends)
        assert abs(shard.stat().st_size - (256 << 10)) < 4096  # "roughly shard_bytes"
    assert index["weight_map"] == seen
    assert index["metadata"]["total_size"] == total
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        json.loads((tmp_path / name).read_text())
    assert "not real weights" in (tmp_path / "README.md").read_text()


def test_same_arguments_same_bytes(tmp_path):
    def contents(out):
        return {p.name: p.read_bytes() for p in out.iterdir()}

    write_model(tmp_path / "a", shards=2, shard_bytes=64 << 10, seed=3)
    write_model(tmp_path / "b", shards=2, shard_bytes=64 << 10, seed=3)
    write_model(tmp_path / "c", shards=2, shard_bytes=64 << 10, seed=4)
    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    a, c = contents(tmp_path / "a"), contents(tmp_path / "c")
    assert a["model-00001-of-00002.safetensors"] != c["model-00001-of-00002.safetensors"]
