"""One home per default: a CLI option that sets a config field shows that field's default and
overrides it only when typed (its own default is "not given"); an option whose default is
derived from other homes shows the values those homes hold now."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing

import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.cli.options import FIELD_ATTR, derived_option, help_default

# Options whose own default is a value, with the reason it is not a config field.
LITERAL_DEFAULTS = {
    ("explain", "method"): "chooses which config applies (IGConfig or CamConfig); METHODS[0]",
    ("bench", "out"): "a benchmark tool's output file, no stage config",
}
# Derived options whose default no constant holds, with the reason; their help says it in words.
NO_SOURCE = {
    ("finetune", "rconf"): "read from the run's rconf stage",
    ("finetune", "lr"): "searched over --lrs on validation",
    ("rconf", "lr"): "searched over --lrs on validation",
}


def _commands():
    return {c.name or c.callback.__name__: c.callback for c in app.registered_commands}


def _options(callback):
    sig = inspect.signature(callback, eval_str=True)
    for p in sig.parameters.values():
        ann = p.annotation
        if typing.get_origin(ann) is typing.Annotated:
            for meta in typing.get_args(ann)[1:]:
                if type(meta).__name__ == "OptionInfo":
                    yield p, meta


def _independent_format(value) -> str:
    """How a default reads in --help, written out again here (not the CLI's own formatter)."""
    if isinstance(value, (tuple, list)):
        return ",".join(_independent_format(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _values_at(home, path: str) -> list:
    """The values at dotted ``path`` of ``home``: a module name, an object, or a registry dict
    (then of each member that has it)."""
    if isinstance(home, str):
        home = importlib.import_module(home)
    out = []
    for member in home.values() if isinstance(home, dict) else [home]:
        value = member
        try:
            for part in filter(None, path.split(".")):
                value = value[part] if isinstance(value, dict) else getattr(value, part)
        except (AttributeError, KeyError):
            continue
        out.append(value)
    return out


def _home_name(home) -> str:
    if isinstance(home, dict):
        return f"a member of {{{', '.join(home)}}}"
    return home if isinstance(home, str) else getattr(home, "__name__", repr(home))


def derived_problems(name: str, info) -> list[str]:
    """Where a derived option's ``--help`` default disagrees with the homes its ``source`` names."""
    source, _, shown = getattr(info, FIELD_ATTR)
    problems = [] if help_default(info.help) == shown else [f"{name}: help shows {help_default(info.help)!r}"]
    for home, path, *convert in source:
        values = _values_at(home, path)
        if not values:
            problems.append(f"{name}: source {_home_name(home)} {path!r} names nothing")
        for value in values:
            text = _independent_format(convert[0](value) if convert else value)
            if not re.search(rf"(?<![\w.]){re.escape(text)}(?![\w.])", shown):
                problems.append(f"{name}: --help shows {shown!r}, but {_home_name(home)} {path} is {text}")
    return problems


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_defaults_to_not_given_and_shows_its_configs_default(command):
    callback = _commands()[command]
    seen = 0
    for param, info in _options(callback):
        field = getattr(info, FIELD_ATTR, None)
        default = param.default
        if (command, param.name) in LITERAL_DEFAULTS or default is inspect.Parameter.empty:
            continue
        assert default in (None, False), (f"{command} {info.param_decls[0] if info.param_decls else param.name}: "
                                          f"default {default!r} written in the CLI; set it in the config field "
                                          "and declare the option with amfmedit.cli.options.field_option")
        if field is None:
            continue
        seen += 1
        cls, name, shown = field
        if name is None:  # derived from other homes
            if not cls:
                assert (command, param.name) in NO_SOURCE, f"{command} --{param.name}: a derived default names no source"
            assert derived_problems(f"{command} --{param.name}", info) == []
            continue
        assert help_default(info.help) == shown, f"{command} --{param.name}: help shows {help_default(info.help)!r}"
        if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
            value = getattr(cls(**{f.name: None for f in dataclasses.fields(cls)
                                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}),
                            name)
            if shown == _independent_format(value) or value is None:
                continue
            pytest.fail(f"{command} --{param.name}: --help shows {shown!r}, the config field {cls.__name__}.{name} "
                        f"defaults to {value!r}")
    if command in ("pretrain", "rconf", "finetune", "evaluate", "explain"):
        assert seen >= 2, f"{command}: no config-backed option found; the check would pass vacuously"


def _info(option):
    return typing.get_args(option)[1]


def test_the_derived_check_catches_a_default_that_drifted_from_its_home():
    from amfmedit.models.specs import FUSION_SPECS
    from amfmedit.stages import configs

    literal = derived_option(float, "--augment-rate", help="Image augmentation probability.",
                             shown="0.9 multimodal, 0.8 image only",
                             source=(("amfmedit.stages.configs", "AUGMENT_RATE_MULTIMODAL"),
                                     ("amfmedit.stages.configs", "AUGMENT_RATE_IMAGE_ONLY")))
    assert derived_problems("finetune --augment-rate", _info(literal)) == [
        f"finetune --augment-rate: --help shows '0.9 multimodal, 0.8 image only', but amfmedit.stages.configs "
        f"AUGMENT_RATE_MULTIMODAL is {configs.AUGMENT_RATE_MULTIMODAL:g}"]
    registry = derived_option(int, "--d-out", help="D_out.", shown="amf 1024", source=((FUSION_SPECS, "settings.d_out"),))
    assert derived_problems("finetune --d-out", _info(registry)) == [
        "finetune --d-out: --help shows 'amf 1024', but a member of {concat, cross_attention, amf} settings.d_out "
        "is 2048"]
    nowhere = derived_option(int, "--x", help="X.", shown="3", source=((configs, "NO_SUCH_CONSTANT"),))
    assert derived_problems("x --x", _info(nowhere)) == ["x --x: source amfmedit.stages.configs 'NO_SUCH_CONSTANT' names nothing"]


def test_help_shows_defaults_and_flags_as_flags():
    out = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "[default: 500]" in out  # PretrainConfig.epochs
    assert "[default: 0.1]" in out  # τ, losses.ITC_TEMPERATURE
    line = next(x for x in out.splitlines() if "--compile" in x)
    assert "<bool>" not in line  # a flag takes no value


def test_an_option_overrides_only_when_typed():
    from amfmedit.cli.options import given
    from amfmedit.stages.pretrain import PretrainConfig

    cfg = given(PretrainConfig(), epochs=None, temperature=0.2)
    assert cfg.epochs == PretrainConfig().epochs and cfg.temperature == 0.2
