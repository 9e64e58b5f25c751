import json

import pytest
import torch

from kd_snn import checkpoint as ckpt
from kd_snn import io as kio
from kd_snn.errors import KdsnnError


def _trained(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    path = tmp_path / "m.safetensors"
    ckpt.save_checkpoint(path, model, {"epoch": 2, "seed": 5}, optimizer=opt)
    return model, opt, path


def test_round_trip_weights_optimizer_and_metadata(tmp_path):
    model, opt, path = _trained(tmp_path)
    tensors, meta = ckpt.load_checkpoint(path)
    assert meta["epoch"] == 2 and meta["seed"] == 5 and "torch" in meta["versions"]
    assert json.loads(path.with_suffix(".json").read_text())["epoch"] == 2
    clone = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ckpt.load_model_state(clone, tensors, str(path))
    for a, b in zip(model.state_dict().values(), clone.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.SGD(clone.parameters(), lr=0.1, momentum=0.9)
    ckpt.load_optimizer_state(opt2, tensors, meta)
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"],
                       opt.state_dict()["state"][0]["momentum_buffer"])


def test_corrupt_truncated_and_foreign_files_refused(tmp_path):
    _, _, path = _trained(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-4] + b"\x00\x01\x02\x03")
    with pytest.raises(KdsnnError, match="checksum mismatch"):
        ckpt.load_checkpoint(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KdsnnError, match="corrupt"):
        ckpt.load_checkpoint(path)
    pickle_like = tmp_path / "evil.pt"
    pickle_like.write_bytes(b"\x80\x04\x95 not a safetensors file")
    with pytest.raises(KdsnnError, match="corrupt or not a kdsnn checkpoint"):
        ckpt.load_checkpoint(pickle_like)
    with pytest.raises(KdsnnError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.safetensors")


def test_checkpoint_that_does_not_fit_is_refused(tmp_path):
    _, _, path = _trained(tmp_path)
    tensors, _ = ckpt.load_checkpoint(path)
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5))
    with pytest.raises(KdsnnError, match="does not fit the model"):
        ckpt.load_model_state(other, tensors, str(path))


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model, opt, path = _trained(tmp_path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(kio, "_fsync_file", boom)  # the temp file is written, then fails
    with pytest.raises(KdsnnError, match="cannot write .*disk full"):  # one line, not OSError
        ckpt.save_checkpoint(path, model, {"epoch": 3})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
