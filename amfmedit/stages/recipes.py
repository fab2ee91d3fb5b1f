"""Named presets of stage settings (``--recipe NAME``), layered under a ``--config`` file and the
flags a user types: defaults < recipe < config file < command line.

Keys are the stage config fields (the CLI options without dashes). A recipe changes only what
it lists; everything else keeps the paper's default.
"""

from __future__ import annotations

RECIPES: dict[str, dict] = {
    # A laptop CPU, a few hundred patients, minutes per stage: ResNet-18 instead of ResNet-50
    # (~4x fewer FLOPs), one warm-up epoch (the paper's 10 of 500 would keep the learning rate
    # near zero for a short run), 20 pretraining epochs (on the 800-patient demo cohort 3 epochs
    # left the validation ITC loss at chance, 4.159 against log(64) = 4.159; 20 reached 3.83,
    # ~1.6 s an epoch at 32 px), a learning rate of 1e-3 found on the demo cohort instead of the
    # search over three, batch 64, and plain cross-entropy (the paper's alpha = (0.1, 2) is tuned
    # to OL3I's ~20:1 imbalance). What `make demo` runs.
    "cpu": {
        "description": "laptop CPU: ResNet-18, 20 pretraining epochs (1 warm-up), lr 1e-3, batch 64, plain CE",
        "pretrain": {"image_arch": "resnet18", "epochs": 20, "warmup_epochs": 1, "batch_size": 64, "lr": 1e-3},
        "rconf": {"epochs": 3, "batch_size": 64, "lr": 1e-3, "loss_weights": []},
        "finetune": {"epochs": 5, "batch_size": 64, "lr": 1e-3, "loss_weights": []},
    },
    # What the authors' code ran where it differs from our defaults (each default's reason:
    # docs/paper-fidelity.md): FT-Mamba with a 128-dimensional state and bare blocks.
    "paper": {
        "description": "the authors' code: FT-Mamba d_state 128 with bare blocks (no residual, no pre-norm)",
        "pretrain": {"d_state": 128, "stacking": "bare"},
    },
    # ... and for DVM its fine-tuning batch of 512 (ours: 128, the OL3I configuration's).
    "paper-dvm": {
        "description": "the authors' DVM setting: as paper, and a fine-tuning batch of 512",
        "pretrain": {"d_state": 128, "stacking": "bare"},
        "rconf": {"batch_size": 512},
        "finetune": {"batch_size": 512},
    },
}
