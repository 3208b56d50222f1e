"""How ``docs/generate.py`` describes a pydantic configuration model in words: each field's
type, default and allowed range, and the TOML sections nested in a model.

Kept apart from the page layout so that the walk over types can be read (and changed) alone.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _optional(annotation: object) -> tuple[object, bool]:
    """(the annotation without None, whether None was allowed)."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Union[rest]), True  # noqa: UP007
    return annotation, False


def _is_model(annotation: object) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _strip_annotated(annotation: object) -> object:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def model_variants(annotation: object) -> list[type[BaseModel]]:
    """The models a field may hold: one, or each member of a (discriminated) union."""
    annotation = _strip_annotated(_optional(annotation)[0])
    if _is_model(annotation):
        return [typing.cast(type[BaseModel], annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_strip_annotated(a) for a in typing.get_args(annotation)]
        if all(_is_model(m) for m in members):
            return [typing.cast(type[BaseModel], m) for m in members]
    return []


def list_of_models(annotation: object) -> type[BaseModel] | None:
    annotation = _strip_annotated(_optional(annotation)[0])
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if _is_model(item):
            return typing.cast(type[BaseModel], item)
    return None


def type_name(annotation: object) -> str:
    annotation = _strip_annotated(annotation)
    inner, optional = _optional(annotation)
    if optional:
        return f"{type_name(inner)} (optional)"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"table of {type_name(args[0])} to {type_name(args[1])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if annotation is Path:
        return "path"
    if inspect.isclass(annotation):
        return {"str": "string", "int": "integer", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def shipped(value: Path) -> str:
    """A path inside the installed package, written the same on every machine."""
    import roadsense.models

    root = Path(roadsense.models.__file__).resolve().parent.parent
    try:
        return "<package>/" + value.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(value)


def toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return f'"{shipped(value)}"' if value.is_absolute() else f'"{value}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, BaseModel):
        return "its defaults"
    return str(value)


def field_default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        factory = typing.cast(Callable[[], object], field.default_factory)
        if _is_model(factory):
            return "its defaults"
        return f"`{toml(factory())}`"
    if field.default is None or field.default is PydanticUndefined:
        return "absent"
    return f"`{toml(field.default)}`"


_BOUNDS: tuple[tuple[type[object], str, str], ...] = (
    (annotated_types.Gt, "gt", "> "),
    (annotated_types.Ge, "ge", "≥ "),
    (annotated_types.Lt, "lt", "< "),
    (annotated_types.Le, "le", "≤ "),
    (annotated_types.MinLen, "min_length", "at least {} entries"),
    (annotated_types.MaxLen, "max_length", "at most {} entries"),
)


def field_range(field: FieldInfo) -> str:
    parts: list[str] = []
    for item in field.metadata:
        for kind, attribute, text in _BOUNDS:
            if isinstance(item, kind):
                value = getattr(item, attribute)
                parts.append(text.format(value) if "{}" in text else f"{text}{value}")
    return ", ".join(parts)


def sections(
    model: type[BaseModel], header: str, prefix: str = ""
) -> Iterator[tuple[str, type[BaseModel], str]]:
    """(TOML header, model, note) of ``model`` and of every section nested in it."""
    yield header, model, ""
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        item = list_of_models(field.annotation)
        if item is not None:
            yield from sections(item, f"[[{key}]]", key)
            continue
        variants = model_variants(field.annotation)
        for variant in variants:
            note = ""
            if len(variants) > 1:
                tag = variant.model_fields.get("type")
                note = f"`type = {toml(tag.default)}`" if tag and not tag.is_required() else ""
                if tag is not None and tag.is_required():
                    args = typing.get_args(tag.annotation)
                    note = f"`type = {toml(args[0])}`" if args else ""
            for sub_header, sub_model, sub_note in sections(variant, f"[{key}]", key):
                yield sub_header, sub_model, sub_note or note
