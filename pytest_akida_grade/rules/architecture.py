"""An exported architecture (`model.to_json()`) as plain data: layer specs, shapes, sizes.

Pure: the JSON a sandbox handed over is read as data, never deserialized, so every rule and
budget is computed before (and whether or not) the trusted side rebuilds the model. Shapes are
worked out here for the layers the grader knows (channels_last); after a layer it does not know,
or a branch, they are None. `parameters` and `activations` give what a rebuild would allocate.
"""

from __future__ import annotations

import math
from typing import Any

from pytest_akida_grade.rules.specs import (
    MAX_LAYER_VALUES,
    MAX_MODEL_VALUES,
    MAX_PARAMETERS,
    Layer,
    Shape,
    Specs,
    cfg,
    cls,
    describe,
    input_shape,
    is_chain,
    model_layers,
    pair,
)

SCALARS = (str, int, float, bool, type(None))
TEXT_CAP = 200  # a config string kept in a spec of a layer the grader does not know
SAME_SHAPE = frozenset({
    "Rescaling", "BatchNormalization", "ReLU", "Activation", "LeakyReLU", "Softmax", "Dropout",
    "SpatialDropout2D", "GaussianNoise"})
CONVOLUTIONS = frozenset({"Conv2D", "SeparableConv2D", "DepthwiseConv2D"})
POOLINGS = frozenset({"MaxPooling2D", "AveragePooling2D"})
GLOBAL_POOLINGS = frozenset({"GlobalAveragePooling2D", "GlobalMaxPooling2D"})
KNOWN = SAME_SHAPE | CONVOLUTIONS | POOLINGS | GLOBAL_POOLINGS | {
    "InputLayer", "Flatten", "Dense", "ZeroPadding2D"}


def layer_specs(config: dict[str, Any]) -> Specs:
    """One spec per layer (docs/contracts.md), shapes inferred without building anything."""
    shape = input_shape(config) if is_chain(config) else None
    specs: Specs = []
    for index, entry in enumerate(model_layers(config)):
        kind = cls(entry)
        output = output_shape(kind, cfg(entry), shape) if kind in KNOWN else None
        specs.append({"index": index, "name": str(cfg(entry).get("name", f"layer_{index}")),
                      "class_name": kind,
                      "config": cfg(entry) if kind in KNOWN else _scalars(cfg(entry)),
                      "input_shape": shape, "output_shape": output})
        shape = output
    return specs


def _scalars(config: dict[str, Any]) -> dict[str, Any]:
    """What the rules may read of a layer the grader does not know: short scalars only."""
    return {str(key): value[:TEXT_CAP] if isinstance(value, str) else value
            for key, value in config.items() if isinstance(value, SCALARS)}


# ---------------------------------------------------------------------------- shapes


def output_shape(kind: str, config: dict[str, Any], shape: Shape) -> Shape:
    """What a known layer outputs for `shape`; None when unknown or impossible."""
    if shape is None:
        return None
    if kind in SAME_SHAPE or kind == "InputLayer":
        return list(shape)
    if kind == "Flatten":
        return [math.prod(shape)]
    if kind == "Dense":
        units = config.get("units")
        return [*shape[:-1], units] if type(units) is int and units > 0 else None
    if len(shape) != 3:
        return None
    if kind in CONVOLUTIONS:
        return _convolved(kind, config, shape)
    if kind in POOLINGS:
        size = pair(config.get("pool_size"))
        strides = pair(config.get("strides")) or size
        return _window(shape, size, strides, (1, 1), config.get("padding"), shape[2])
    if kind in GLOBAL_POOLINGS:
        return [1, 1, shape[2]] if config.get("keepdims") else [shape[2]]
    return _padded(config.get("padding"), shape)


def _convolved(kind: str, config: dict[str, Any], shape: list[int]) -> Shape:
    multiplier = config.get("depth_multiplier", 1)
    channels = (config.get("filters") if kind != "DepthwiseConv2D"
                else shape[2] * multiplier if type(multiplier) is int else None)
    if type(channels) is not int or channels <= 0:
        return None
    return _window(shape, pair(config.get("kernel_size")), pair(config.get("strides", 1)),
                   pair(config.get("dilation_rate", 1)), config.get("padding"), channels)


def _window(shape: list[int], size: tuple[int, ...] | None, strides: tuple[int, ...] | None,
            dilation: tuple[int, ...] | None, padding: object, channels: int) -> Shape:
    """Keras' output size of a sliding window ('valid' or 'same')."""
    if not (size and strides and dilation and len(size) == len(strides) == len(dilation) == 2):
        return None
    if min(*size, *strides, *dilation) <= 0 or padding not in ("valid", "same"):
        return None
    out = []
    for extent, window, stride, rate in zip(shape[:2], size, strides, dilation, strict=True):
        reach = rate * (window - 1) + 1
        out.append(-(-extent // stride) if padding == "same" else (extent - reach) // stride + 1)
    return [*out, channels] if min(out) > 0 else None


def _padded(padding: object, shape: list[int]) -> Shape:
    """ZeroPadding2D's [[top, bottom], [left, right]]."""
    if not (isinstance(padding, list) and len(padding) == 2
            and all(isinstance(p, list) and len(p) == 2 for p in padding)):
        return None
    amounts = [v for p in padding for v in p]
    if not all(type(v) is int and v >= 0 for v in amounts):
        return None
    return [shape[0] + amounts[0] + amounts[1], shape[1] + amounts[2] + amounts[3], shape[2]]


# ---------------------------------------------------------------------------- sizes


def parameters(layer: Layer) -> int | None:
    """The weights a rebuild of this known layer allocates; None when unknown."""
    config, shape = cfg(layer), layer.get("input_shape")
    if cls(layer) not in KNOWN or not isinstance(shape, list):
        return None
    bias = 1 if config.get("use_bias", True) else 0
    kind, channels = cls(layer), int(shape[-1])
    kernel = pair(config.get("kernel_size"))
    area = math.prod(kernel) if kernel else 0
    output = layer.get("output_shape") or [0]
    units = int(output[-1])
    if kind == "Conv2D":
        groups = config.get("groups", 1)
        per = channels // groups if type(groups) is int and groups > 0 else channels
        return area * per * units + bias * units
    if kind == "DepthwiseConv2D":
        return area * units + bias * units
    if kind == "SeparableConv2D":
        multiplier = config.get("depth_multiplier", 1)
        inner = channels * multiplier if type(multiplier) is int else 0
        return area * inner + inner * units + bias * units
    if kind == "Dense":
        return channels * units + bias * units
    if kind == "BatchNormalization":
        return channels * (2 + bool(config.get("center", True)) + bool(config.get("scale", True)))
    return 0


def activations(layer: Layer) -> int | None:
    """The values this layer outputs for one image; None when unknown."""
    shape = layer.get("output_shape")
    return math.prod(shape) if isinstance(shape, list) else None


def budget_problem(specs: Specs) -> str | None:
    """Why a model is far beyond what an AKD1000 could hold (both numbers), or None."""
    total = sum(parameters(layer) or 0 for layer in specs)
    if total > MAX_PARAMETERS:
        return (f"the model has {total:,} parameters; an AKD1000 cannot hold a model anywhere "
                f"near that size (the grader refuses more than {MAX_PARAMETERS:,}, already far "
                "beyond what maps). Fix: use fewer or narrower layers")
    for layer in specs:
        values = activations(layer) or 0
        if values > MAX_LAYER_VALUES:
            return (f"{describe(layer)} outputs {values:,} values an image; the AKD1000 maps at "
                    f"most 28 x 28 x 512 (the grader refuses more than {MAX_LAYER_VALUES:,}). "
                    "Fix: use fewer filters or pool earlier")
    values = sum(activations(layer) or 0 for layer in specs)
    if values > MAX_MODEL_VALUES:
        return (f"the model's layers output {values:,} values an image in all (the grader "
                f"refuses more than {MAX_MODEL_VALUES:,}, far beyond what an AKD1000 maps). "
                "Fix: use fewer filters or pool earlier")
    return None
