"""Images gathered by index: held in memory or streamed from the memory-mapped file, same batches."""

import numpy as np
import pytest
import torch

from amfmedit.train.inputs import ImageBank, choose_residency


def test_streaming_from_the_memmap_gives_the_same_batches(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, size=(20, 1, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "images.npy", arr)
    mm = np.load(tmp_path / "images.npy", mmap_mode="r")
    rows = np.array([7, 3, 19, 3, 0])
    host = ImageBank(mm, device=torch.device("cpu"), residency="host")
    stream = ImageBank(mm, device=torch.device("cpu"), residency="stream")
    assert host.residency == "host" and stream.residency == "stream"
    assert torch.equal(host.gather(rows), torch.from_numpy(arr[rows]))
    assert torch.equal(stream.gather(rows), torch.from_numpy(arr[rows]))


def test_auto_residency_streams_what_does_not_fit(monkeypatch):
    import amfmedit.train.inputs as inputs

    monkeypatch.setattr(inputs, "host_available_bytes", lambda: 1000)
    assert choose_residency(400, torch.device("cpu")) == "host"
    assert choose_residency(600, torch.device("cpu")) == "stream"
    with pytest.raises(ValueError, match="unknown residency"):
        choose_residency(1, torch.device("cpu"), "gpu")
