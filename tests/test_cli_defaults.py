"""One home per default: a CLI option that sets a config field shows that field's default and
overrides it only when typed (its own default is "not given")."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.cli.options import FIELD_ATTR, help_default

# Options whose own default is a value, with the reason it is not a config field.
LITERAL_DEFAULTS = {
    ("explain", "method"): "chooses which config applies (IGConfig or CamConfig); METHODS[0]",
    ("bench", "out"): "a benchmark tool's output file, no stage config",
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
