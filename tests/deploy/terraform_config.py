"""deploy/terraform/ read with python-hcl2 (no Terraform binary needed): blocks by kind and name,
and a small renderer for the outputs' `${...}` references."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import hcl2

TERRAFORM_DIR: Final = Path(__file__).resolve().parents[2] / "deploy" / "terraform"

_OPTIONS: Final = hcl2.SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)
_REFERENCE: Final = re.compile(r"\$\{([^{}]+)\}")


@dataclass
class TerraformConfig:
    """Every block of a Terraform directory, by kind."""

    files: list[Path] = field(default_factory=list)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def resources_of(self, kind: str) -> dict[str, dict[str, Any]]:
        """The resources of one type, by name."""
        return {name: body for (k, name), body in self.resources.items() if k == kind}


def parse_file(path: Path) -> dict[str, Any]:
    """One .tf file as python-hcl2's dict; a syntax error names the file."""
    try:
        with path.open(encoding="utf-8") as handle:
            parsed: dict[str, Any] = hcl2.load(handle, serialization_options=_OPTIONS)
    except Exception as exc:
        raise AssertionError(f"{path.name} is not valid HCL: {exc}") from exc
    return parsed


def load_config(directory: Path = TERRAFORM_DIR) -> TerraformConfig:
    """Parse every .tf file of `directory` (duplicate names are errors, as in Terraform)."""
    config = TerraformConfig(files=sorted(directory.glob("*.tf")))
    for path in config.files:
        parsed = parse_file(path)
        for block in parsed.get("variable", []):
            _add(config.variables, block, path)
        for block in parsed.get("output", []):
            _add(config.outputs, block, path)
        for block in parsed.get("locals", []):
            _add(config.locals, block, path)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    _add(config.resources, {(kind, name): body}, path)
    return config


def _add(into: dict[Any, Any], block: dict[Any, Any], path: Path) -> None:
    for key, body in block.items():
        if key in into:
            raise AssertionError(f"{path.name}: {key} is defined twice")
        into[key] = body


def references(expression: Any) -> list[str]:
    """The `${...}` expressions inside a rendered string value."""
    return _REFERENCE.findall(expression) if isinstance(expression, str) else []


def render(expression: Any, values: dict[str, str]) -> str:
    """A string value with each `${reference}` replaced from `values` (KeyError if unknown)."""
    if not isinstance(expression, str):
        raise TypeError(f"not a string expression: {expression!r}")
    return _REFERENCE.sub(lambda match: values[match.group(1).strip()], expression)


def single(blocks: Any) -> dict[str, Any]:
    """The only element of a nested block list (python-hcl2 gives blocks as lists)."""
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one block, got {blocks!r}"
    block: dict[str, Any] = blocks[0]
    return block
