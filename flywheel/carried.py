"""Tolerant decoding of models that Temporal carries between versions of the code.

Every workflow and activity input carries a :class:`~flywheel.config.Settings` snapshot. Settings is
strict (``extra="forbid"``: a typo in a config file must fail at start, naming the field), but a snapshot
written by the NEXT version of the code (one more config field) or the previous one (one field fewer)
must still decode while runs wait for review across a rolling deploy. A :class:`Carried` model (every
workflow/activity input and result in workflows/models.py) drops, when decoded from data, the keys its
fields do not know at every level (nested sections, specs, lists and dicts of them) before the strict
models validate; missing keys take their defaults as usual (so every new field needs a default:
docs/versioning.md). :func:`tolerant` does the same for one field's type.

Pure: no Temporal import. Config loaded from files and the environment stays strict.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, model_validator


def _model_arg(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _strip(annotation: Any, value: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _strip(get_args(annotation)[0], value)
    model = _model_arg(annotation)
    if model is not None:
        return drop_unknown(model, value) if isinstance(value, dict) else value
    if origin in (Union, types.UnionType):
        models = [m for m in map(_model_arg, get_args(annotation)) if m is not None]
        return drop_unknown(models[0], value) if len(models) == 1 and isinstance(value, dict) else value
    args = get_args(annotation)
    if origin in (list, tuple, set, frozenset, Sequence) and isinstance(value, list) and args:
        return [_strip(args[0], v) for v in value]
    if origin in (dict, Mapping) and isinstance(value, dict) and len(args) == 2:
        return {k: _strip(args[1], v) for k, v in value.items()}
    return value


def drop_unknown(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys a strict ``model`` (and its nested models) would refuse as extra."""
    fields = model.model_fields
    by_alias = {f.alias: name for name, f in fields.items() if f.alias}
    strict = model.model_config.get("extra") == "forbid"
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in fields else by_alias.get(key)
        if name is None:
            if not strict:
                out[key] = value
            continue
        out[key] = _strip(fields[name].annotation, value)
    return out


def tolerant(model: type[BaseModel]) -> Any:
    """``Annotated[model, ...]`` that ignores unknown keys (at any depth) when decoded from data."""
    return Annotated[model, BeforeValidator(lambda v: drop_unknown(model, v) if isinstance(v, dict) else v)]


class Carried(BaseModel):
    """Base of the models Temporal carries: unknown keys are ignored at every depth, even inside strict
    config sections (Settings, NIMConfig, TrainingConfig ...)."""

    @model_validator(mode="before")
    @classmethod
    def _ignore_unknown(cls, data: Any) -> Any:
        return drop_unknown(cls, data) if isinstance(data, dict) else data
