"""What the model zoo declares, without torch: each family member's declarations and the defaults
of the settings a user sets from the command line, the image architectures, the fine-tuning
strategies and the paper's loss constants.

``--help`` and the stage configs read these without building (or importing) a model. The
classes take them from here: a member class is decorated with :func:`declares` (its ``kind``,
``title``, ... become class attributes, the contract callers read, see
:mod:`amfmedit.models.fusion`) and its constructor's defaults for these settings are the
fields of its settings dataclass (``d_out: int = AMFSettings.d_out``).
``tests/train/test_train_registries.py`` checks that every registered class agrees with its spec.

A member registered at run time without a spec (a plugin class in ``FUSIONS``) trains like the
others; only ``--help`` lists the shipped members, from :data:`FUSION_SPECS` and
:data:`TABULAR_ENCODER_SPECS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# ----------------------------------------------------------------------------------------------
# the paper's constants
# ----------------------------------------------------------------------------------------------

#: λ1 (leakage) and λ2 (density) of eq. 14 (Appendix A.3: "empirically set to 5.0").
LAMBDA_LEAKAGE = 5.0
LAMBDA_DENSITY = 5.0
#: τ of eq. 11 (the reference configuration's ``temperature: 0.1``).
ITC_TEMPERATURE = 0.1
#: α of eq. 12 for OL3I (Appendix A.3: 0.1 for class 0, 2 for class 1).
OL3I_CLASS_WEIGHTS = (0.1, 2.0)
#: γ of the focal loss: the authors' ``FocalLoss`` default, which their OL3I configuration keeps
#: (it sets only ``alpha: [0.1, 2]``).
FOCAL_GAMMA = 1.0
#: How eq. 9/10 normalise each l1 norm: "paper" divides it by the length of the part it sums (the
#: printed D read as that length); "authors" divides it by the other part's length, as the
#: authors' FusionModule does in every published run (amfmedit.models.losses).
NORMALISERS = ("paper", "authors")
#: FT-Mamba's ``final_norm`` choices (amfmedit.models.tabular.FINAL_NORMS): torch's LayerNorm
#: (ours) or mambular's (x - mean) / (unbiased std + eps), the authors' FT-Mamba's last norm
FINAL_NORM_NAMES = ("layernorm", "mambular")
#: AMF's D_out, the length of the fused vector (the reference configuration's ``classify_dim``).
D_OUT = 2048

#: how a tabular encoder reads missing values (amfmedit.models.tokenizer): the imputed values, or
#: a learned missing token per feature
MISSING_MODES = ("impute", "token")

#: how fine-tuning treats the pretrained encoders
STRATEGIES = ("trainable", "frozen")

#: the shipped image encoders (:data:`amfmedit.models.IMAGE_ENCODERS`): architecture -> its pooled width
ARCHS = {"resnet50": 2048, "resnet18": 512}
IMAGE_WEIGHTS_HELP = ("image encoder start: 'imagenet' (torchvision's ImageNet weights: ResNet-50 IMAGENET1K_V2, "
                      "ResNet-18 IMAGENET1K_V1; a 1-channel CT stem gets the RGB filters summed), a PATH to a "
                      "state dict, or 'none' (random initialisation, as the paper)")


# ----------------------------------------------------------------------------------------------
# family members
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusionSpec:
    """What a fusion declares to its callers (the meaning of each field: :mod:`amfmedit.models.fusion`)."""

    kind: str
    title: str
    settings: type  # a dataclass: the settings --help shows, with their defaults
    needs_feature_map: bool = False
    run_inputs: tuple[str, ...] = ()
    aux_weights: Mapping[str, float] = field(default_factory=dict)
    reads_presence: bool = False


@dataclass(frozen=True)
class TabularEncoderSpec:
    """What a tabular encoder declares: ``width_argument`` is the setting ``--tabular-dim`` (D_tab) sets."""

    kind: str
    title: str
    settings: type
    width_argument: str = "d_block"


@dataclass(frozen=True)
class ConcatSettings:
    pass


@dataclass(frozen=True)
class CrossAttentionSettings:
    pass


@dataclass(frozen=True)
class AMFSettings:
    d_out: int = D_OUT
    normaliser: str = "paper"  # eq. 9/10 as printed; "authors": L_img and L_tab swapped


@dataclass(frozen=True)
class MLPSettings:
    d_block: int = 256  # AMF-MedIT §4.2.1


@dataclass(frozen=True)
class ResNetSettings:
    d_block: int = 256


@dataclass(frozen=True)
class FTTransformerSettings:
    d_block: int = 64


@dataclass(frozen=True)
class FTMambaSettings:
    d_block: int = 64
    d_state: int = 16  # Mamba's default (the reasons against mambular's 128: FTMambaEncoder)
    expand: int = 2
    pooling: str = "avg"  # the reference code's readout; "cls" is the paper's text
    residual: bool = True  # x + Mamba(LayerNorm(x)), as mamba_ssm stacks its mixer
    final_norm: str = "layernorm"  # torch's; "mambular": the authors' (FINAL_NORM_NAMES)


CONCAT = FusionSpec("concat", "Concatenation", ConcatSettings)
CROSS_ATTENTION = FusionSpec("cross_attention", "Cross-attention", CrossAttentionSettings, needs_feature_map=True)
AMF = FusionSpec("amf", "AMF module", AMFSettings, run_inputs=("r_conf",),
                 aux_weights={"leakage": LAMBDA_LEAKAGE, "density": LAMBDA_DENSITY},  # eq. 14: λ1, λ2
                 reads_presence=True)
MLP = TabularEncoderSpec("mlp", "MLP", MLPSettings)
RESNET = TabularEncoderSpec("resnet", "ResNet", ResNetSettings)
FT_TRANSFORMER = TabularEncoderSpec("ft_transformer", "FT-Transformer", FTTransformerSettings)
FT_MAMBA = TabularEncoderSpec("ft_mamba", "FT-Mamba", FTMambaSettings)

#: the shipped members, in the order of the registries (:data:`amfmedit.models.FUSIONS`, ...)
FUSION_SPECS: dict[str, FusionSpec] = {s.kind: s for s in (CONCAT, CROSS_ATTENTION, AMF)}
TABULAR_ENCODER_SPECS: dict[str, TabularEncoderSpec] = {s.kind: s for s in (MLP, RESNET, FT_TRANSFORMER, FT_MAMBA)}


def settings_of(spec: FusionSpec | TabularEncoderSpec) -> dict[str, Any]:
    """A member's settings with their defaults (a subset of :func:`amfmedit.models.options_of` of its class)."""
    return {f.name: f.default for f in dataclasses.fields(spec.settings)}


def declares(spec: FusionSpec | TabularEncoderSpec) -> Callable[[type], type]:
    """Class decorator: the member class carries ``spec``'s declarations as class attributes, and ``spec``."""

    def decorate(cls: type) -> type:
        for f in dataclasses.fields(spec):
            if f.name != "settings":
                setattr(cls, f.name, getattr(spec, f.name))
        cls.spec = spec
        return cls

    return decorate
