"""Layer specs (docs/contracts.md) and what every rule shares: Violation, layer names, sizes.

Pure: no TensorFlow, Keras or Akida here.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

Layer = dict[str, Any]  # one layer spec: index, name, class_name, config, input/output shape
Specs = list[Layer]

BOUNDED_RELU_EXAMPLE = "keras.layers.ReLU(max_value=6.0)"


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    layer_index: int | None = None
    layer_name: str | None = None


def describe(layer: Layer) -> str:
    """A human name for a layer, e.g. "layer 7 'max_pooling2d_1' (MaxPooling2D)"."""
    return f"layer {layer.get('index')} '{layer.get('name')}' ({layer.get('class_name')})"


def violation(rule: str, layer: Layer | None, message: str) -> Violation:
    if layer is None:
        return Violation(rule, message)
    return Violation(rule, message, layer.get("index"), layer.get("name"))


def cls(layer: Layer) -> str:
    return str(layer.get("class_name", ""))


def cfg(layer: Layer) -> dict[str, Any]:
    config = layer.get("config")
    return config if isinstance(config, dict) else {}


def pair(value: object) -> tuple[int, ...] | None:
    """Keras stores sizes as int or [h, w]; normalise to a tuple (None stays None)."""
    if value is None:
        return None
    try:
        if isinstance(value, int | float):
            return (int(value), int(value))
        if isinstance(value, list | tuple):
            return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pass
    return None  # malformed config: let the rule report it as unsupported


def size_text(size: tuple[int, ...] | None) -> str:
    return "x".join(str(v) for v in size) if size else "?"


def is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def in_layer_order(violations: list[Violation]) -> list[Violation]:
    """Violations sorted by layer; model-wide ones (no layer) last."""
    return sorted(violations, key=lambda v: (v.layer_index is None, v.layer_index or 0))
