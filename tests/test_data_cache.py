"""runner.data.cache: data made in code is generated once per key and read back identically."""
import torch

from runner.data.cache import cache_key, cached


def test_cached_generates_once_and_reads_back(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return {"u": torch.arange(6.0).view(2, 3)}

    a, info_a = cached("toy", {"n": 3, "nu": 0.01}, make, cache_dir=tmp_path)
    b, info_b = cached("toy", {"nu": 0.01, "n": 3}, make, cache_dir=tmp_path)  # key order does not matter
    assert len(calls) == 1 and not info_a["hit"] and info_b["hit"]
    assert torch.equal(a["u"], b["u"]) and info_a["seconds"] >= 0
    cached("toy", {"n": 4, "nu": 0.01}, make, cache_dir=tmp_path)                # new params: new file
    cached("toy", {"n": 3, "nu": 0.01}, make, version=2, cache_dir=tmp_path)     # new version: new file
    assert len(calls) == 3 and not list(tmp_path.rglob("*.tmp"))


def test_cache_off_and_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRUN_CACHE", "off")
    _, info = cached("toy", {}, lambda: {"u": torch.zeros(1)})
    assert info["path"] is None and not info["hit"]
    path = tmp_path / "data" / f"{cache_key('toy', {})}.pt"
    path.parent.mkdir(parents=True)
    path.write_text("not a tensor file")
    out, info = cached("toy", {}, lambda: {"u": torch.ones(1)}, cache_dir=tmp_path)
    assert not info["hit"] and torch.equal(out["u"], torch.ones(1))
    assert cached("toy", {}, lambda: {"u": torch.zeros(1)}, cache_dir=tmp_path)[1]["hit"]
