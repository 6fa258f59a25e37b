"""The Bicep templates as data, read with a real Bicep parser (pycep), for the infrastructure tests.

No Bicep compiler runs here, so the tests check on the parsed templates what `az deployment`
would otherwise be the first to notice: module wiring, scopes, role ids and app settings.
pycep writes identifiers and string literals alike as plain strings; `resolve` follows an
identifier to the variable it names when there is one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "functionapp.bicep"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """The body of a resource or module, under its `if (...)` condition or `for` loop wrapper."""
    while isinstance(config, dict) and {"condition", "loop_type"} & config.keys() and "config" in config:
        config = config["config"]
    return config


def is_conditional(config: dict[str, Any]) -> bool:
    return isinstance(config, dict) and config.get("condition") is not None


def resources(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(symbolic name, resource type, body) of every resource declared in a file, existing ones too."""
    for name, resource in parse(path).get("resources", {}).items():
        yield name, resource["type"], unwrap(resource["config"])


def resources_of_type(path: Path, type_: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, body) for name, kind, body in resources(path) if kind == type_]


def variables(path: Path) -> dict[str, Any]:
    return {name: var["value"] for name, var in parse(path).get("variables", {}).items()}


def resolve(value: Any, path: Path) -> Any:
    """Follow an identifier to the variable it names (one level is all these templates use)."""
    names = variables(path)
    if isinstance(value, str) and value in names:
        return names[value]
    return value


def decorator_types(parameter: dict[str, Any]) -> set[str]:
    return {d["type"] for d in parameter.get("decorators", [])}


def walk(value: Any) -> Iterator[Any]:
    """Every node of a parsed expression, depth first."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def app_settings() -> dict[str, Any]:
    """Name → parsed value of every app setting functionapp.bicep can set (conditional ones included).

    The settings are the object variables merged by `allSettings = union(...)`; the user's
    `additionalAppSettings` parameter is not a static name and is left out.
    """
    names = variables(FUNCTION_APP)
    merged = names["allSettings"]["function"]
    assert merged["type"] == "union", "allSettings must stay a union(...) of setting objects"
    settings: dict[str, Any] = {}
    for argument in merged["parameters"].values():
        if argument not in names:
            continue  # a parameter (additionalAppSettings), not a declared object
        for node in _setting_objects(names[argument]):
            settings.update(node)
    return settings


def _setting_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict) and "operator" in value and value["operator"]["type"] == "conditional":
        operands = value["operator"]["operands"]
        yield from _setting_objects(operands["true_value"])
        yield from _setting_objects(operands["false_value"])
    elif isinstance(value, dict) and not ({"operator", "function"} & value.keys()):
        yield value


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def json_file(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


SKIP_COMMENT = re.compile(r"//\s*checkov:skip=(?P<id>CKV2?_[A-Z]+_\d+)(?P<rest>.*)$", re.MULTILINE)
