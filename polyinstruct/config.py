"""YAML configs: load, apply ``key=value`` overrides, validate with clear errors.

Each stage declares its config as a pydantic model; ``validate_config`` turns a
pydantic error into a ``ConfigError`` naming the file and the dotted field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from polyinstruct.yamlio import load_yaml, safe_load  # noqa: F401 - load_yaml is re-exported
from polyinstruct.errors import ConfigError

M = TypeVar("M")


CACHE_ENV = "POLYINSTRUCT_CACHE_DIR"
_OLD_CACHE_ENVS = {"POLYINSTRUCT_CACHE": "", "POLYINSTRUCT_JUDGE_CACHE": "judge"}


def cache_dir(*parts: str) -> Path:
    """polyinstruct's one cache folder, ``$POLYINSTRUCT_CACHE_DIR`` (default
    ``~/.cache/polyinstruct``), or a subfolder of it: ``models/NAME`` for prepared checkpoints,
    ``judge/`` for judgments. The older variables are refused with the new name, rather than
    silently ignored (a judge cache that moves costs its API calls again)."""
    for old, sub in _OLD_CACHE_ENVS.items():
        if os.environ.get(old) and not os.environ.get(CACHE_ENV):
            hint = f"{CACHE_ENV}=<folder> (the judge cache goes to its {sub}/ subfolder)" if sub else f"{CACHE_ENV}"
            raise ConfigError(f"${old} is no longer read: polyinstruct has one cache variable; set {hint}")
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "polyinstruct")
    return Path(base, *parts)


# File endings that mark a config value as a path even when the file does not exist (yet), so a
# missing file is reported as a missing file, not as an unknown catalogue or template name.
PATH_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt", ".gz", ".bz2", ".xz",
                 ".zst", ".yaml", ".yml", ".jinja", ".safetensors")


def resolve_input_path(value: Any, base: str | os.PathLike | None, *, by_suffix: bool = True) -> Any:
    """Resolve a relative input path written in a YAML file against that file's folder.

    Changed: values that name something existing under ``base``, start with ``./`` or ``../``, or
    (``by_suffix``) end like a data/template file. Unchanged: absolute paths, ``~`` paths,
    catalogue/template/model names and hub ids (``owner/name``), which resolve elsewhere. Values
    typed on the command line are never passed here: they are relative to the working directory.
    """
    if base is None or not isinstance(value, str) or not value:
        return value
    if value.startswith("~") or Path(value).is_absolute():
        return value
    candidate = Path(base) / value
    if any(ch in value for ch in "*?["):
        import glob

        return str(candidate) if glob.glob(str(candidate)) else value
    looks = value.startswith(("./", "../")) or (by_suffix and value.lower().endswith(PATH_SUFFIXES))
    return str(candidate) if candidate.exists() or looks else value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML scalars/lists."""
    out = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value", file="<command line>")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        try:
            value = safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {key}: {p} is not a mapping", file="<command line>", field=key)
            node = nxt
        node[parts[-1]] = value
    return out


def validate_config(model: type[M], data: dict[str, Any], *, file: str | None = None) -> M:
    """Validate ``data`` against a pydantic model; raise ConfigError on the first problem."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as e:
        # a misspelt field first: it usually explains the "Field required" that comes with it
        errs = sorted(e.errors(), key=lambda err: err.get("type") != "extra_forbidden")
        lines = []
        for err in errs:
            loc = ".".join(str(x) for x in err.get("loc", ()))
            msg = err.get("msg", "invalid")
            msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
            if err.get("type") == "extra_forbidden":
                msg = unknown_field_message(model, err["loc"])
            lines.append(f"{loc}: {msg}")
        first = errs[0] if errs else {}
        field = ".".join(str(x) for x in first.get("loc", ()))
        more = "" if len(lines) == 1 else "\n  " + "\n  ".join(lines[1:])
        raise ConfigError(f"{first.get('msg', 'invalid')}{more}" if not lines else lines[0].split(": ", 1)[1] + more,
                          file=file, field=field) from None


def unknown_field_message(model: Any, loc: tuple) -> str:
    """``unknown field Did you mean: lr? ...`` for the unknown field at ``loc``.

    A model may declare ``HABIT_NAMES`` (a class variable): names other tools use (Hugging
    Face / TRL ``learning_rate``) mapped to its own field and an optional hint.
    """
    from polyinstruct.registry import suggest

    name = str(loc[-1])
    owner = _nested_model(model, loc[:-1])
    moved = getattr(owner, "MOVED_FIELDS", {}).get(name) if owner is not None else None
    if moved:  # a field that belongs in a section (an experiment's train:)
        return f"unknown field Did you mean: {moved[0]}? ({moved[1]})"
    habit = getattr(owner, "HABIT_NAMES", {}).get(name) if owner is not None else None
    if habit:
        field, hint = habit if isinstance(habit, tuple) else (habit, "")
        return (f"unknown field Did you mean: {field}? ({name} is the Hugging Face/TRL name; polyinstruct "
                f"calls it {field}{'; ' + hint if hint else ''})")
    fields = list(getattr(owner, "model_fields", {})) if owner is not None else []
    near = suggest(name, fields)
    return f"unknown field{near}"


def _nested_model(model: Any, loc: tuple) -> Any:
    """The (possibly nested) pydantic model class that ``loc`` points into, or None."""
    import typing

    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return None
        candidates = [info.annotation, *typing.get_args(info.annotation)]
        model = next((c for c in candidates if isinstance(c, type) and hasattr(c, "model_fields")), None)
        if model is None:
            return None
    return model


def _nested_fields(model: Any, loc: tuple) -> list[str]:
    """Field names of the (possibly nested) pydantic model that ``loc`` points into."""
    import typing

    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        candidates = [info.annotation, *typing.get_args(info.annotation)]
        model = next((c for c in candidates if isinstance(c, type) and hasattr(c, "model_fields")), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
