"""Training on a full disk: the checkpoint being written is the file named, the previous one is
kept, no temporary file or lock is left (a real small tmpfs where one can be mounted; the
simulated twin is tests/train/test_train_bad_input.py::test_full_disk_while_checkpointing_...)."""

from __future__ import annotations

import re

import pytest
from small_disk import amfmedit_argv, on_small_disk

from amfmedit.train.checkpoint import load_checkpoint

BASELINE = ["finetune", "--fusion", "none", "--modality", "tabular", "--tabular-encoder", "mlp", "--seeds", "2022",
            "--lr", "0.001", "--batch-size", "64", "--epochs", "3", "--quiet", "--run", "b"]
STAGE = "runs/b/supervised-tabular-seed2022"


# best.pt ~0.3 MB and last.pt ~1 MB: on 1 MB the first last.pt does not fit; on 2 MB the first
# epoch's pair does, the second epoch's new last.pt (written beside the old one) does not
@pytest.mark.parametrize("size, kept, hint", [
    ("1m", "no earlier checkpoint existed", "free space and rerun"),
    ("2m", "the previous checkpoint there is intact", "free space and continue with --resume"),
])
def test_checkpoint_on_a_really_full_disk(tiny_ol3i, tmp_path, size, kept, hint):
    """torch.save used to end this with `RuntimeError: ... unexpected pos 704 vs 598` and a traceback."""
    mnt = tmp_path / "small"
    run = on_small_disk(size, mnt, amfmedit_argv(*BASELINE, "--data", tiny_ol3i.name, "--data-dir",
                                                 tiny_ol3i.data_dir, "--runs-dir", mnt / "runs"), cwd=tmp_path)
    assert run.rc == 2, run.output[-3000:]
    assert len(run.lines) == 1 and "Traceback" not in run.output, run.output[-3000:]
    assert run.lines[0] == (f"error: disk full while writing {mnt}/{STAGE}/last.pt ({kept}); {hint}")
    assert not [p for p in run.left if re.search(r"(^|/)\.|\.tmp$|\.lock", p)], run.left  # no temporary file, no lock
    assert (f"{STAGE}/last.pt" in run.left) == (size == "2m")


def test_the_kept_checkpoint_is_the_last_good_epoch(tiny_ol3i, tmp_path):
    """After the 2 MB run the checkpoint left is epoch 1's, and it loads."""
    mnt = tmp_path / "small"
    script = ["sh", "-c", 'src=$1 dst=$2; shift 2; "$@"; rc=$?; cp -r "$src" "$dst"; exit $rc', "sh",
              str(mnt / STAGE), str(tmp_path / "kept"),
              *amfmedit_argv(*BASELINE, "--data", tiny_ol3i.name, "--data-dir", tiny_ol3i.data_dir, "--runs-dir",
                             mnt / "runs")]
    run = on_small_disk("2m", mnt, script, cwd=tmp_path)
    assert run.rc == 2 and "disk full while writing" in run.output, run.output[-3000:]
    assert load_checkpoint(tmp_path / "kept" / "last.pt")["epoch"] == 1
