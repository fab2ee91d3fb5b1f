"""What the explainers compute, torch-free: ``amfmedit explain --help`` shows these defaults."""

from __future__ import annotations

from dataclasses import dataclass

from amfmedit.errors import UserError

OUTPUTS = ("prob", "logit")  # what an attribution explains: the target's probability or its logit


@dataclass
class IGConfig:
    """What ``explain --method ig`` computes (the paper's setup by default)."""

    steps: int = 50
    max_samples: int | None = None  # None: every sample of the split
    split: str = "train"  # the paper: all training samples
    target: str | None = None  # None: positive class (binary) / each sample's label (multiclass)
    output: str = "prob"  # attribute the target's softmax probability ("logit": its raw logit)
    batch_size: int = 256  # sample-steps per forward/backward pass
    seed: int = 0  # which samples when --max-samples caps them
    top_k: int = 10
    # None: ``steps`` as given; a tolerance such as 0.01: the fewest Gauss-Legendre steps whose
    # relative completeness error on a pilot of the samples is within it (steps_for_completeness)
    completeness: float | None = None

    def validate(self) -> None:
        if self.completeness is not None and not (0 < self.completeness < 1):
            raise UserError(f"--completeness {self.completeness}: a relative error in (0, 1), e.g. 0.01 for 1%")
        if self.steps < 2:
            raise UserError(f"--steps {self.steps}: Integrated Gradients needs at least 2 steps")
        if self.max_samples is not None and self.max_samples < 1:
            raise UserError(f"--max-samples {self.max_samples}: must be at least 1")
        if self.split not in ("train", "val", "test"):
            raise UserError(f"--split {self.split}: use train, val or test")
        if self.output not in OUTPUTS:
            raise UserError(f"--output {self.output}: use {' or '.join(OUTPUTS)}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be positive")
        if self.top_k < 1:
            raise UserError(f"--top-k {self.top_k}: must be positive")
