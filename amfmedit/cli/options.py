"""Options defined once: config-backed options that default to "not given", and the run options.

A default lives in one place, the typed config (``PretrainConfig``, ``Recipe``, ...). A CLI
option that sets a config field is declared with :func:`field_option`: its Python default is
``None`` ("not given", so only what the user typed overrides the config) and ``--help`` shows
the config's default, read from the dataclass itself. :func:`given` then applies the typed
values to the config.

The run options (``--run --runs-dir --data-dir --device --compile --images-in --resume --force
--quiet``) are defined once in :data:`RUN_OPTIONS`; :func:`run_options` adds the ones a command
takes to its signature and hands the command one :class:`~amfmedit.stages.configs.RunOptions`.

Everything here is read to build ``--help``, so it imports only torch-free modules
(:mod:`amfmedit.deferred`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
from pathlib import Path
import typing
from typing import Annotated, Any, Callable, List, Optional

import typer

from amfmedit.errors import UserError, close_matches
from amfmedit.stages.configs import RunOptions
from amfmedit.stages.recipes import RECIPES
from amfmedit.train.logging import LOG_HELP

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FIELD_ATTR = "amfmedit_field"  # set on an OptionInfo: (config class, field name) it overrides


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` of ``cls`` (factories called)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def shown_default(cls: type, name: str, *, convert: Callable | None = None) -> str:
    """What ``--help`` shows for a field's default (``convert`` maps it to the option's form)."""
    value = default_of(cls, name)
    return _show(convert(value) if convert else value)


def field_option(cls: type, name: str, typ: type, *flags: str, help: str, shown: str | None = None,
                 convert: Callable | None = None, **kw):
    """``Annotated[Optional[typ], typer.Option(...)]`` for config field ``cls.name``.

    The option defaults to None (not given); ``--help`` shows the field's default, or ``shown``
    where the default is resolved later (e.g. "the paper's choice for the task").
    """
    text = shown if shown is not None else shown_default(cls, name, convert=convert)
    info = typer.Option(*flags, help=_with_default(help, text), show_default=False, **kw)
    setattr(info, FIELD_ATTR, (cls, name, text))
    return Annotated[Optional[typ], info]


def _with_default(help: str, shown: str) -> str:
    # Written into the help text: Typer would print a string default in parentheses.
    return f"{help} [default: {shown}]"


def help_default(text: str) -> str:
    """The default an option's help shows (the inverse of :func:`_with_default`), None if it shows none."""
    mark = "[default: "
    return text[text.rindex(mark) + len(mark):-1] if mark in text else None


def derived_option(typ: type, *flags: str, help: str, shown: str, source: tuple, **kw):
    """An option whose default is resolved from other homes (a registry, a task-dependent constant).

    ``shown`` must be computed from those homes, never written as a literal. ``source`` names
    every value it shows, for the test that checks them (``tests/test_cli_defaults.py``): a tuple
    of ``(home, path)`` or ``(home, path, convert)``, where ``home`` is an object or a registry
    dict (then ``path`` is read on each member that has it), ``path`` dotted attributes and
    ``convert`` maps the value to its form in ``shown``. ``()``: no constant holds the default
    (it is read from the run or searched), and ``shown`` says so in words.
    """
    info = typer.Option(*flags, help=_with_default(help, shown), show_default=False, **kw)
    setattr(info, FIELD_ATTR, (source, None, shown))
    return Annotated[Optional[typ], info]


def given(config, **values):
    """``config`` with the fields the user typed (values that are not None) replaced."""
    typed = {k: v for k, v in values.items() if v is not None}
    return dataclasses.replace(config, **typed) if typed else config


# ----------------------------------------------------------------------------------------------
# run options
# ----------------------------------------------------------------------------------------------


def _opt(name: str, typ: type, *flags: str, help: str, shown: str | None = None):
    return field_option(RunOptions, name, typ, *flags, help=help, shown=shown), None


def _flag(*flags: str, help: str):
    # metavar "": a flag takes no value, so --help shows none (Typer would print <bool>)
    return Annotated[bool, typer.Option(*flags, help=help, metavar="")], False


#: name -> (annotation, Python default) of every run option.
RUN_OPTION_SPECS: dict[str, tuple[Any, Any]] = {
    "run": _opt("run", str, "--run", help="Run name or path.", shown="the most recent run"),
    "runs_dir": _opt("runs_dir", Path, "--runs-dir", help="Folder of runs.", shown="$AMFMEDIT_RUNS, else ./runs"),
    "data_dir": _opt("data_dir", Path, "--data-dir", help="Folder of prepared datasets.",
                     shown="$AMFMEDIT_DATA, else ./data"),
    "device": _opt("device", str, "--device", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N."),
    "compile": _flag("--compile", help="torch.compile the model (faster on GPUs after a warm-up)."),
    "images_in": _opt("images_in", str, "--images-in",
                      help="Where images live while training: auto, device, host or stream (from disk)."),
    "resume": _flag("--resume", help="Continue an interrupted stage exactly where its last epoch ended."),
    "force": _flag("--force", help="Replace a finished result instead of refusing."),
    "quiet": _flag("--quiet", "-q", help="No progress bar."),
    "log": _opt("log", str, "--log", help=LOG_HELP[0].upper() + LOG_HELP[1:] + "."),
}
RUN_OPTIONS = tuple(RUN_OPTION_SPECS)
# The same definitions for commands that take a few of them without a run (prepare, bench).
DataDir = RUN_OPTION_SPECS["data_dir"][0]
Device = RUN_OPTION_SPECS["device"][0]
Force = RUN_OPTION_SPECS["force"][0]
Quiet = RUN_OPTION_SPECS["quiet"][0]


ConfigFile = Annotated[Optional[Path], typer.Option(
    "--config", help="A TOML file of this command's options (keys as the options without dashes, e.g. epochs = 3; "
                     "a [pretrain] / [rconf] / [finetune] section when one file serves several); the flags you type "
                     "override it. Every stage writes the one it ran with: <run>/<stage>/config.toml.")]
RecipeName = Annotated[Optional[str], typer.Option(
    "--recipe", help="A named preset under --config and the flags: " + "; ".join(
        f"{k}: {v['description']}" for k, v in RECIPES.items()) + ".")]
CONFIG_SECTIONS = ("pretrain", "rconf", "finetune")  # the commands that take --config / --recipe
# config fields whose CLI option has another name or form: field -> (option, converter)
_FIELD_ALIASES = {"aux_weights": ("aux_weight", lambda d: [f"{k}={v:g}" for k, v in d.items()])}


def _coerce(value: Any, annotation: Any, key: str, where: str):
    """A TOML value in the form the option takes (lists of numbers become "a,b" text, ...)."""
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation
    if typing.get_origin(base) is typing.Union:
        base = next(a for a in typing.get_args(base) if a is not type(None))
    if typing.get_origin(base) in (list, List):
        return [str(v) for v in (value if isinstance(value, list) else [value])]
    if base is str and isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if value else "none"
    if base is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key} = {value!r}: expected true or false")
        return value
    if base in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (base is int and isinstance(value, float)):
            raise UserError(f"{where}: {key} = {value!r}: expected {'an integer' if base is int else 'a number'}")
        return base(value)
    if base is Path:
        return Path(str(value))
    return str(value)


def _layers(command: str, recipe: str | None, config: Path | None) -> tuple[dict, dict]:
    """(values, source of each value) from ``--recipe`` then ``--config`` (later wins)."""
    values, source = {}, {}
    if recipe is not None:
        if recipe not in RECIPES:
            hint = close_matches(recipe, list(RECIPES))
            raise UserError(f"--recipe {recipe}: no such recipe (known: {', '.join(RECIPES)})"
                            + (f"; did you mean {hint}?" if hint else ""))
        for k, v in RECIPES[recipe].get(command, {}).items():
            values[k], source[k] = v, f"--recipe {recipe}"
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"--config {path}: no such file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"--config {path}: not a readable TOML file ({exc}); fix it or write it anew") from None
        sectioned = any(isinstance(v, dict) and k in CONFIG_SECTIONS for k, v in data.items())
        flat = data.get(command, {}) if sectioned else data
        for k, v in flat.items():
            if not isinstance(v, dict) or k in _FIELD_ALIASES:
                values[k], source[k] = v, f"--config {path}"
    return values, source


def _apply_layers(command: str, layered: tuple[dict, dict], kwargs: dict, params: dict,
                  configs: tuple) -> dict[str, str]:
    """Fill options the user did not type (None / False) from the recipe and config layers.

    Returns, for each option filled so, where its value came from: ``"--config FILE: key = value"``.
    """
    values, source = layered
    filled: dict[str, str] = {}
    for key, raw in values.items():
        option, value = key, raw
        if key in _FIELD_ALIASES:
            option, convert = _FIELD_ALIASES[key]
            value = convert(raw)
        if option not in params:
            if any(key in {f.name for f in dataclasses.fields(c)} and default_of(c, key) == _plain(raw)
                   for c in configs):
                continue  # a setting that has no option here, recorded at its default
            raise UserError(f"{source[key]}: {key} is not an option of `amfmedit {command}`"
                            + (f"; did you mean {close_matches(key, list(params))}?" if close_matches(key, list(params))
                               else ""))
        if kwargs.get(option) in (None, False) or kwargs.get(option) == []:
            kwargs[option] = _coerce(value, params[option].annotation, key, source[key])
            filled[option] = f"{source[key]}: {key} = {json.dumps(raw, default=str)}"
    return filled


def _long_flag(param: inspect.Parameter) -> str | None:
    """The long flag (``--epochs``) of an option parameter, from its ``typer.Option``."""
    if typing.get_origin(param.annotation) is not Annotated:
        return None
    for info in typing.get_args(param.annotation)[1:]:
        decls = [getattr(info, "default", None), *getattr(info, "param_decls", ())]
        flag = next((d for d in decls if isinstance(d, str) and d.startswith("--")), None)
        if flag:
            return flag
    return None


def _from_file(exc: UserError, filled: dict[str, str], params: dict) -> UserError:
    """``exc`` reworded where it blames an option whose value came from --config / --recipe:
    ``--epochs 0: must be ...`` becomes ``--config FILE: epochs = 0: must be ...`` (the user typed no
    --epochs and would look for it on the command line)."""
    message = str(exc)
    for option, origin in filled.items():
        flag = _long_flag(params[option])
        if flag is None:
            continue
        m = re.match(rf"{re.escape(flag)}(?: [^:]*)?: (.*)$", message)
        if m:
            return UserError(f"{origin}: {m[1]}")
        if re.search(rf"{re.escape(flag)}\b", message):
            return UserError(f"{message} ({flag} is set by {origin})")
    return exc


def _plain(value):
    return tuple(value) if isinstance(value, list) else value


def run_options(*names: str, configs: tuple = ()) -> Callable:
    """Add the run options ``names`` to a command; it receives ``opts`` (RunOptions) and, if asked, ``quiet``.

    ``configs``: the config classes whose fields the command's options set; then the command
    also takes ``--config FILE`` and ``--recipe NAME``, layered under the flags the user types.
    The command's own signature must not list them. The command line recorded in ``run.json``
    is the process's ``sys.argv``.
    """
    unknown = set(names) - set(RUN_OPTIONS)
    if unknown:
        raise ValueError(f"unknown run options {sorted(unknown)}; known: {RUN_OPTIONS}")

    def deco(fn: Callable) -> Callable:
        specs = RUN_OPTION_SPECS
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name not in ("opts", "quiet")]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=specs[n][0], default=specs[n][1])
                 for n in RUN_OPTIONS if n in names]
        if configs:
            added += [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=ConfigFile, default=None),
                      inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, annotation=RecipeName, default=None)]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        by_name = {p.name: p for p in params}
        wants_quiet = "quiet" in sig.parameters

        @functools.wraps(fn)
        def wrapper(**kwargs):
            filled: dict[str, str] = {}
            if configs:
                layered = _layers(fn.__name__, kwargs.pop("recipe", None), kwargs.pop("config", None))
                filled = _apply_layers(fn.__name__, layered, kwargs, by_name, configs)
            try:
                values = {n: kwargs.pop(n) for n in names if n in kwargs}
                quiet = values.pop("quiet", False)
                opts = RunOptions(**given_kwargs(values))
                if wants_quiet:
                    kwargs["quiet"] = quiet
                return fn(opts=opts, **kwargs)
            except UserError as exc:
                blamed = _from_file(exc, filled, by_name)
                if blamed is exc:
                    raise
                raise blamed from exc

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must see the new signature, not fn's
        return wrapper

    return deco


def given_kwargs(values: dict) -> dict:
    """The run options the user typed (None: not given, the RunOptions default applies)."""
    return {k: v for k, v in values.items() if v is not None}
