"""The assignment's design space: allowed layers, bounded ReLUs, supported precisions.

Pure functions over layer specs (see specs.py); each returns `Violation`s whose messages a
student can act on: they name the layer and its index, the rule broken, and the fix.
"""

from __future__ import annotations

import math
import operator
from typing import SupportsIndex

from pytest_akida_grade.assignment import NUM_CLASSES, SUPPORTED_SCHEMES
from pytest_akida_grade.results import Violation, in_layer_order
from pytest_akida_grade.rules.specs import (
    BN,
    BOUNDED_RELU_EXAMPLE,
    CONV,
    POOL,
    RELU,
    Layer,
    Specs,
    cfg,
    cls,
    describe,
    is_number,
)

# A violation's rule is the check it fails (catalog.CHECKS names each check's rule).
CHECK_LAYER_WHITELIST = "layer_whitelist"
CHECK_RELU_BOUNDED = "relu_bounded"
CHECK_QUANTIZATION_SCHEME = "quantization_scheme"

ALLOWED_ANYWHERE = (*CONV, *POOL, BN, RELU)
ALLOWED_TEXT = (
    "Allowed layers are Conv2D, SeparableConv2D, MaxPooling2D, ReLU and BatchNormalization, "
    "plus the template's scaffolding: one leading Rescaling and a final Flatten + Dense(10)."
)

# ------------------------------------------------------------------------------ layer whitelist

REPLACEMENTS = {
    "Dropout": "remove it (it only acts during training and Akida has no equivalent)",
    "SpatialDropout2D": "remove it (it only acts during training and Akida has no equivalent)",
    "GaussianNoise": "remove it (it only acts during training and Akida has no equivalent)",
    "AveragePooling2D": "use MaxPooling2D instead",
    "AvgPool2D": "use MaxPooling2D instead",
    "GlobalAveragePooling2D": "remove it and shrink the feature map with MaxPooling2D instead",
    "GlobalMaxPooling2D": "remove it and shrink the feature map with MaxPooling2D instead",
    "DepthwiseConv2D": "use SeparableConv2D instead",
    "Reshape": "remove it; the final Flatten already feeds the Dense(10) classifier",
    "ZeroPadding2D": "remove it and use padding='same' on the convolution instead",
    "Softmax": "remove it; the grader takes the argmax of the raw Dense(10) outputs",
    "LeakyReLU": f"use {BOUNDED_RELU_EXAMPLE} instead (Akida 1.0 only has a bounded ReLU)",
    "PReLU": f"use {BOUNDED_RELU_EXAMPLE} instead (Akida 1.0 only has a bounded ReLU)",
    "ELU": f"use {BOUNDED_RELU_EXAMPLE} instead (Akida 1.0 only has a bounded ReLU)",
    "Add": "build a plain Sequential stack; Akida 1.0 has no skip connections",
    "Concatenate": "build a plain Sequential stack; Akida 1.0 has no skip connections",
}
DEFAULT_REPLACEMENT = "remove it or replace it with one of the allowed layers"


def layer_whitelist(layers: Specs) -> list[Violation]:
    """Only the assignment's layers, and the scaffolding only where the template has it."""
    body = [layer for layer in layers if cls(layer) != "InputLayer"]
    found = [_whitelist_violation(layer, position, body) for position, layer in enumerate(body)]
    found += _stray_input_layers(layers)
    found.append(_missing_classifier(body))
    return in_layer_order([v for v in found if v])


def _whitelist_violation(layer: Layer, position: int, body: Specs) -> Violation | None:
    kind = cls(layer)
    if kind in ALLOWED_ANYWHERE:
        return None
    if kind == "Rescaling":
        problem = _rescaling_problem(position)
    elif kind == "Flatten":
        problem = _flatten_problem(position, body)
    elif kind == "Dense":
        problem = _dense_problem(layer, position, body)
    else:
        problem = f"{kind} is not an allowed layer. {ALLOWED_TEXT} Fix: {_replacement(layer)}."
    return Violation.at(CHECK_LAYER_WHITELIST, layer, f"{describe(layer)}: {problem}") if problem \
        else None


def _replacement(layer: Layer) -> str:
    if cls(layer) == "Activation":
        if _activation_name(layer) == "softmax":
            return REPLACEMENTS["Softmax"]
        return f"use {BOUNDED_RELU_EXAMPLE} instead (Akida 1.0 only has a bounded ReLU)"
    return REPLACEMENTS.get(cls(layer), DEFAULT_REPLACEMENT)


def _rescaling_problem(position: int) -> str | None:
    if position == 0:
        return None
    return ("Rescaling is only allowed once, as the very first layer (it scales the 0-255 "
            "pixels for the input convolution). Fix: remove this one.")


def _flatten_problem(position: int, body: Specs) -> str | None:
    if position == len(body) - 2 and cls(body[-1]) == "Dense":
        return None
    return ("Flatten is only allowed right before the final Dense(10) classifier, as second to "
            "last layer. Fix: remove it, or move it to just before the final Dense(10).")


def _dense_problem(layer: Layer, position: int, body: Specs) -> str | None:
    if position != len(body) - 1:
        return ("a hidden Dense layer is not allowed; the only Dense allowed is the final "
                "Dense(10) classifier after Flatten. Fix: remove it (use convolutions to add "
                "capacity).")
    if position == 0 or cls(body[position - 1]) != "Flatten":
        return ("the final Dense must come right after a Flatten layer. Fix: add "
                "keras.layers.Flatten() just before it.")
    units = cfg(layer).get("units")
    if units != NUM_CLASSES:
        return (f"the final Dense must have {NUM_CLASSES} units, one per digit, but has {units}. "
                f"Fix: use keras.layers.Dense({NUM_CLASSES}).")
    return None


def _stray_input_layers(layers: Specs) -> list[Violation | None]:
    leading = next((i for i, layer in enumerate(layers) if cls(layer) != "InputLayer"),
                   len(layers))
    return [
        Violation.at(CHECK_LAYER_WHITELIST, layer,
                   f"{describe(layer)}: an InputLayer is only allowed as the model's input. "
                   "Fix: remove it.")
        for layer in layers[leading:] if cls(layer) == "InputLayer"
    ]


def _missing_classifier(body: Specs) -> Violation | None:
    if body and cls(body[-1]) == "Dense":
        return None  # a misplaced final Dense is reported on the Dense itself
    last = f" (it ends with {describe(body[-1])})" if body else ""
    return Violation(
        CHECK_LAYER_WHITELIST,
        f"The model must end with the template's classifier, keras.layers.Flatten() followed "
        f"by keras.layers.Dense({NUM_CLASSES}){last}. Fix: add them as the last two layers.",
    )


# -------------------------------------------------------------------------------- bounded ReLU


# ReLUs with no upper bound however they are written: an Activation layer's function, or a layer.
UNBOUNDED_RELU_FUNCTIONS = frozenset({"relu", "leaky_relu", "elu", "selu", "gelu", "silu",
                                      "swish", "mish", "softplus"})
UNBOUNDED_RELU_LAYERS = frozenset({"LeakyReLU", "PReLU", "ELU", "ThresholdedReLU"})


def relu_bounded(layers: Specs) -> list[Violation]:
    """Every ReLU is a plain clipped ReLU with a finite max_value; no activations inside layers."""
    found: list[Violation | None] = []
    for layer in layers:
        if cls(layer) == RELU:
            found += [_relu_cap_problem(layer), _relu_shape_problem(layer)]
        elif cls(layer) == "Activation" or cls(layer) in UNBOUNDED_RELU_LAYERS:
            found.append(_unbounded_relu_problem(layer))  # what it is: a whitelist matter
        else:
            found.append(_inner_activation_problem(layer))
    return [v for v in found if v]


def _unbounded_relu_problem(layer: Layer) -> Violation | None:
    """An Activation('relu') or a LeakyReLU layer is a ReLU with no upper bound."""
    name = _activation_name(layer) if cls(layer) == "Activation" else cls(layer)
    if cls(layer) == "Activation" and name not in UNBOUNDED_RELU_FUNCTIONS:
        return None
    return Violation.at(
        CHECK_RELU_BOUNDED, layer,
        f"{describe(layer)} is a ReLU with no upper bound ({name}), but Akida 1.0 only supports "
        f"a ReLU with a finite, positive upper bound. Fix: use {BOUNDED_RELU_EXAMPLE}.")


def _relu_cap_problem(layer: Layer) -> Violation | None:
    cap = cfg(layer).get("max_value")
    if isinstance(cap, int | float) and is_number(cap) and math.isfinite(cap) and cap > 0:
        return None
    return Violation.at(
        CHECK_RELU_BOUNDED, layer,
        f"{describe(layer)} has max_value={cap!r}, but Akida 1.0 only supports a ReLU with a "
        f"finite, positive upper bound (its outputs are quantized between 0 and that bound). "
        f"Fix: use {BOUNDED_RELU_EXAMPLE}.",
    )


def _relu_shape_problem(layer: Layer) -> Violation | None:
    config = cfg(layer)
    slope, threshold = config.get("negative_slope", 0), config.get("threshold", 0)
    if slope in (0, None) and threshold in (0, None):
        return None
    return Violation.at(
        CHECK_RELU_BOUNDED, layer,
        f"{describe(layer)} has negative_slope={slope!r} and threshold={threshold!r}, but Akida "
        "1.0's ReLU is a plain clipped ReLU, min(max(x, 0), max_value): quantizeml requires "
        f"both to be 0. Fix: use {BOUNDED_RELU_EXAMPLE} with no negative_slope or threshold.",
    )


def _activation_name(layer: Layer) -> str | None:
    activation = cfg(layer).get("activation")
    if isinstance(activation, dict):  # a serialized activation object
        inner = activation.get("config")
        activation = inner.get("name") if isinstance(inner, dict) else activation.get("class_name")
    return None if activation in (None, "linear") else str(activation)


def _inner_activation_problem(layer: Layer) -> Violation | None:
    activation = _activation_name(layer)
    if activation is None:
        return None
    if cls(layer) == "Dense":
        fix = ("Akida outputs the raw class potentials and the grader takes their argmax, so the "
               f"classifier must not have an activation. Fix: remove activation={activation!r} "
               "from the Dense (train with from_logits=True).")
    else:
        fix = (f"Akida 1.0 needs every activation as a separate, bounded ReLU layer. Fix: remove "
               f"activation={activation!r} from the layer and add {BOUNDED_RELU_EXAMPLE} after it.")
    return Violation.at(CHECK_RELU_BOUNDED, layer,
                      f"{describe(layer)} has activation={activation!r} built in. {fix}")


# -------------------------------------------------------------------------- quantization scheme


def _scheme_text(scheme: tuple[int, int]) -> str:
    return f"W{scheme[0]}A{scheme[1]}"


SUPPORTED_TEXT = ", ".join(_scheme_text(s) for s in SUPPORTED_SCHEMES)


def quantization_scheme(weight_bits: object, activation_bits: object) -> list[Violation]:
    """(WEIGHT_BITS, ACTIVATION_BITS) must be one of Akida 1.0's low-precision schemes."""
    found = [_bits_type_problem("WEIGHT_BITS", weight_bits),
             _bits_type_problem("ACTIVATION_BITS", activation_bits)]
    weight, activation = _whole(weight_bits), _whole(activation_bits)
    if weight is None or activation is None:
        return [v for v in found if v]
    scheme = (weight, activation)
    if scheme in SUPPORTED_SCHEMES:
        return []
    return [Violation(
        CHECK_QUANTIZATION_SCHEME,
        f"You declared WEIGHT_BITS={scheme[0]}, ACTIVATION_BITS={scheme[1]} "
        f"({_scheme_text(scheme)}), but Akida 1.0 only supports {SUPPORTED_TEXT}. "
        "Fix: set WEIGHT_BITS and ACTIVATION_BITS to one of these pairs.",
    )]


def _whole(value: object) -> int | None:
    """An int-like declaration (int, numpy integer) as an int; None for bools and the rest."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    return operator.index(value) if isinstance(value, SupportsIndex) else None


def _bits_type_problem(name: str, value: object) -> Violation | None:
    if _whole(value) is not None:
        return None
    return Violation(
        CHECK_QUANTIZATION_SCHEME,
        f"{name} must be a whole number (an int such as 4), but you declared {value!r} "
        f"({type(value).__name__}). Akida 1.0 supports {SUPPORTED_TEXT}. "
        f"Fix: write e.g. {name} = 4 at module level.",
    )


