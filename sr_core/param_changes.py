"""What changed in params between a record (a checkpoint, a stage's start) and params.yaml now,
compared key by key in the stage's own params as dvc.yaml lists them."""

import json
from pathlib import Path
from typing import Any

import yaml

DVC_YAML = Path(__file__).resolve().parent.parent / "dvc.yaml"  # the pipeline beside this package


def flat(values: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping of params as dotted keys (`train.seed`), the way DVC and `-S` name them."""
    items = {}
    for key, value in values.items():
        if isinstance(value, dict):
            items |= flat(value, f"{prefix}{key}.")
        else:
            items[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return items


def stage_params(stage: str) -> tuple[str, ...]:
    """The params.yaml keys (or sections) that `stage` of the project's dvc.yaml lists under
    `params:`, those whose values DVC records in dvc.lock for it."""
    with open(DVC_YAML) as f:
        listed = yaml.safe_load(f)["stages"][stage].get("params", [])
    return tuple(key for entry in listed for key in ([entry] if isinstance(entry, str) else entry.get("params.yaml", [])))


def param_differences(ours: dict, theirs: dict, keys: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(key, ours, theirs) for each dotted key under one of `keys` whose values differ; a key that
    one side lacks counts as None there."""
    ours, theirs = flat(ours), flat(theirs)
    return [(key, ours.get(key), theirs.get(key)) for key in sorted(set(ours) | set(theirs))
            if any(key == k or key.startswith(f"{k}.") for k in keys) and ours.get(key) != theirs.get(key)]


def describe_differences(differences: list[tuple[str, Any, Any]], ours: str, theirs: str) -> str:
    """`key X ours, Y theirs; ...`, the values as params.yaml spells them (JSON-like)."""
    return "; ".join(f"{key} {json.dumps(a)} {ours}, {json.dumps(b)} {theirs}" for key, a, b in differences)
