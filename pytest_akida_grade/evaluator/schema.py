"""Which exported architectures the trusted side agrees to rebuild: tf_keras' own objects only.

Pure (no TensorFlow): `validate` walks the JSON a sandbox handed over *before* anything
deserializes it, and refuses every object that is not one of tf_keras' built-in layers,
initializers, regularizers or constraints, every Lambda (it carries Python bytecode) and every
reference to a Python function or module of the student's. The allowed names are passed in (the
evaluator reads them off tf_keras), so the rules here are testable without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64
MAX_NODES = 200_000
MODELS = frozenset({"Sequential", "Functional", "Model"})
MODEL_MODULES = (None, "keras", "keras.models")
POLICIES = frozenset({"Policy", "DTypePolicy"})
REFUSED = {
    "Lambda": "a Lambda layer carries Python code",
    "TFOpLambda": "it wraps a raw TensorFlow operation",
    "SlicingOpLambda": "it wraps a raw TensorFlow operation",
}
ALLOWED_TEXT = ("use tf_keras' own layers (the assignment allows Conv2D, SeparableConv2D, "
                "MaxPooling2D, ReLU and BatchNormalization, plus Rescaling, Flatten and Dense)")


class SchemaError(ValueError):
    """The architecture cannot be rebuilt safely; the message is for the student."""


@dataclass(frozen=True)
class Builtins:
    """tf_keras' names, by the module a serialized object names."""

    layers: frozenset[str]  # names as classes
    initializers: frozenset[str]  # classes and their lowercase names ("glorot_uniform")
    regularizers: frozenset[str]
    constraints: frozenset[str]
    activations: frozenset[str]

    def for_module(self, module: str | None) -> frozenset[str]:
        return {"keras.layers": self.layers, "keras.initializers": self.initializers,
                "keras.regularizers": self.regularizers, "keras.constraints": self.constraints,
                "keras.mixed_precision": POLICIES}.get(module or "", frozenset())


def validate(text: str, builtins: Builtins) -> dict[str, Any]:
    """The parsed architecture, or SchemaError naming the first object refused."""
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise SchemaError(f"the exported architecture is not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("class_name") not in MODELS:
        raise SchemaError("the exported architecture is not a Sequential or functional model: "
                          "build_model() must return keras.models.Sequential([...]) or a "
                          "keras.Model of tf_keras layers")
    for count, (node, layer) in enumerate(_objects(config, None, 0)):
        if count >= MAX_NODES:
            raise SchemaError("the exported architecture is too large to grade")
        _check_object(node, layer, builtins)
    return config


def _objects(value: Any, layer: str | None, depth: int) -> Iterator[tuple[dict[str, Any], str]]:
    """Every serialized object (a dict with a class_name), with the layer it belongs to."""
    if depth > MAX_DEPTH:
        raise SchemaError("the exported architecture is nested too deeply to grade")
    if isinstance(value, dict):
        if "class_name" in value:
            config = value.get("config")
            name = config.get("name") if isinstance(config, dict) else None
            layer = f"layer '{name}' ({value['class_name']})" if isinstance(name, str) \
                else layer or f"a {value['class_name']!s:.60}"
            yield value, layer
        for key, item in value.items():
            yield from _objects(item, layer, depth + 1)
            if isinstance(item, str):
                yield from _named_reference(key, item, layer)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item, layer, depth + 1)


def _named_reference(key: str, text: str,
                     layer: str | None) -> Iterator[tuple[dict[str, Any], str]]:
    """A string that names a function (activation="relu") is checked like an object."""
    if key in ("activation", "recurrent_activation"):
        yield {"class_name": text, "module": "keras.activations"}, layer or "a layer"
    elif key.endswith(("_initializer", "_regularizer", "_constraint")):
        module = "keras." + key.rsplit("_", 1)[1] + "s"
        yield {"class_name": text, "module": module}, layer or "a layer"


def _check_object(node: dict[str, Any], layer: str, builtins: Builtins) -> None:
    name, module = node.get("class_name"), node.get("module")
    if not isinstance(name, str) or not isinstance(module, str | None):
        raise SchemaError(f"{layer}: the exported architecture has a malformed object")
    if node.get("registered_name") not in (None, name):
        raise SchemaError(f"{layer} is registered as {node['registered_name']!r}: custom objects "
                          f"cannot be graded; {ALLOWED_TEXT}")
    if name in REFUSED:
        raise SchemaError(f"{layer} cannot be graded: {REFUSED[name]}, and the grader rebuilds "
                          f"your model from its architecture alone; {ALLOWED_TEXT}")
    if name in MODELS and module in MODEL_MODULES:
        return
    if module == "keras.activations":
        if name in builtins.activations:
            return
        raise SchemaError(f"{layer} uses the activation {name!r}, which is not one of tf_keras' "
                          f"built-in activations; {ALLOWED_TEXT}")
    if name in builtins.for_module(module):
        return
    kind = "function" if name == "function" else "object"
    raise SchemaError(f"{layer} uses a {kind} that is not one of tf_keras' built-ins "
                      f"({module}.{node.get('config') if kind == 'function' else name}); custom "
                      f"layers, functions and objects cannot be graded: {ALLOWED_TEXT}")
