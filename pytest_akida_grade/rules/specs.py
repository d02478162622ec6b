"""Layer specs (docs/contracts.md) and what every rule shares: layer names, sizes, the limits
measured on the mapper. A broken rule is a `results.Violation` (made with `Violation.at`).

Pure: no TensorFlow, Keras or Akida here.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Layer = dict[str, Any]  # one layer spec: index, name, class_name, config, input/output shape
Specs = list[Layer]
Shape = list[int] | None  # (height, width, channels), or as many as the layer outputs

BOUNDED_RELU_EXAMPLE = "keras.layers.ReLU(max_value=6.0)"


# Said by every rule that comes from mapping measurements rather than BrainChip's page.
FOUND_BY_MAPPING = "found by mapping, not in BrainChip's constraints page"

# ------------------------------------------------------ AKD1000 limits found by mapping
# Measured with akida 2.19.3, cnn2snn 2.19.3 and quantizeml 1.2.5 on a virtual AKD1000;
# tests/test_mapper_limits.py re-maps each boundary, so an upgrade that moves one fails there.

# Most input channels one CNP holds for a Conv2D after the first layer, by weight bits, then
# kernel. One more channel fails with "Filter size is too big to fit in a CNP": 448 maps and
# 449 fails for 1x1, 3x3 and 5x5 kernels at 4 bits, 149/150 for 7x7; at 2 bits 896/897, and
# 448/449 for 7x7. The same at 1-bit activations, with any filters, input size or stride.
CNP_MAX_INPUT_CHANNELS = {4: {1: 448, 3: 448, 5: 448, 7: 149},
                          2: {1: 896, 3: 896, 5: 896, 7: 448}}
# A SeparableConv2D maps with this many input channels at every kernel and bit width.
SEPARABLE_INPUT_CHANNELS_MAPPED = 512
AKD1000_NPS = 80  # BrainChip's figure for the chip
# The most neurons (filters) one layer maps with ("num_neurons should be set between 1 and
# 512"), and the most inputs of a Dense (FNP: "The maximum value is 57334").
MAPPER_MAX_NEURONS = 512
MAPPER_MAX_DENSE_INPUTS = 57_334
# Budgets checked on the exported JSON before the trusted side allocates anything: far beyond
# any model the virtual AKD1000 maps (the largest we mapped: 1.3 million parameters; one layer's
# output at most 28 x 28 x 512 = 401,408 values, 0.6 million over a whole model), so they only
# stop a model no AKD1000 could hold, before it costs the grader gigabytes.
MAX_PARAMETERS = 16_000_000
MAX_LAYER_VALUES = 4 * 28 * 28 * MAPPER_MAX_NEURONS
MAX_MODEL_VALUES = 4_000_000
# The virtual AKD1000 mesh lists 78 NPs, each able to run a convolution (CNP1), plus the input
# unit (HRC) that runs the first Conv2D; "N are needed but M are available" counts these 78.
MAPPER_CNP1_NPS = 78


def describe(layer: Layer) -> str:
    """A human name for a layer, e.g. "layer 7 'max_pooling2d_1' (MaxPooling2D)"."""
    return f"layer {layer.get('index')} '{layer.get('name')}' ({layer.get('class_name')})"


def by_name(layers: Specs, name: str) -> Layer | None:
    return next((layer for layer in layers if layer.get("name") == name), None)


def input_channels(layer: Layer) -> int | None:
    """The channels a layer reads (last axis of its input shape), None when unknown."""
    shape = layer.get("input_shape")
    if isinstance(shape, list | tuple) and shape and type(shape[-1]) is int:
        return int(shape[-1])
    return None


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


# ------------------------------------------------------------- how cnn2snn fuses layers

CONV = ("Conv2D", "SeparableConv2D")
POOL = ("MaxPooling2D", "MaxPool2D")  # MaxPool2D is an alias; class_name is usually the former
BN = "BatchNormalization"
RELU = "ReLU"
FUSABLE = (*POOL, BN, RELU)
# Layers that end a conv block; anything else unknown is skipped (layer_whitelist reports it).
BLOCK_BOUNDARY = ("Flatten", "Dense", "Rescaling", "InputLayer")


@dataclass
class Block:
    """One future Akida layer: a convolution and the layers cnn2snn fuses into it."""

    conv: Layer
    members: Specs = field(default_factory=list)
    is_input: bool = False

    def of(self, classes: Iterable[str] | str) -> Specs:
        wanted = (classes,) if isinstance(classes, str) else tuple(classes)
        return [layer for layer in self.members if cls(layer) in wanted]

    @property
    def pool(self) -> Layer | None:
        pools = self.of(POOL)
        return pools[0] if pools else None


def fuse(layers: Specs) -> tuple[list[Block], Specs]:
    """Group layers into conv blocks; BN/pool/ReLU that no conv can absorb are orphans."""
    blocks: list[Block] = []
    orphans: Specs = []
    current: Block | None = None
    for layer in layers:
        kind = cls(layer)
        if kind in CONV:
            current = Block(layer)
            blocks.append(current)
        elif kind in FUSABLE:
            (current.members if current else orphans).append(layer)
        elif kind in BLOCK_BOUNDARY:
            current = None
    first = first_neural(layers)
    if blocks and first is blocks[0].conv and cls(first) == "Conv2D":
        blocks[0].is_input = True
    return blocks, orphans


def first_neural(layers: Specs) -> Layer | None:
    return next((layer for layer in layers if cls(layer) in (*CONV, "Dense")), None)


# ------------------------------------------------------------- the exported JSON's structure


def model_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The serialized layers as `model.layers` lists them (a Sequential's InputLayer is not
    one of them, a functional model's is)."""
    layers = [entry for entry in cfg(config).get("layers", []) if isinstance(entry, dict)]
    if config.get("class_name") == "Sequential" and layers and cls(layers[0]) == "InputLayer":
        return layers[1:]
    return layers


def input_shape(config: dict[str, Any]) -> Shape:
    """(height, width, channels) the model reads: its InputLayer's, else its first layer's."""
    layers = [entry for entry in cfg(config).get("layers", []) if isinstance(entry, dict)]
    for entry in layers[:1]:
        shape = cfg(entry).get("batch_input_shape")
        if isinstance(shape, list) and len(shape) > 1 and shape[0] is None:
            return _dims(shape[1:])
    build = cfg(config).get("build_input_shape")
    return _dims(build[1:]) if isinstance(build, list) and build else None


def is_chain(config: dict[str, Any]) -> bool:
    """A Sequential model, or a functional one whose every layer reads the one before it."""
    if config.get("class_name") == "Sequential":
        return True
    layers = model_layers(config)
    for before, layer in itertools.pairwise(layers):
        nodes = layer.get("inbound_nodes")
        if nodes != [[[cfg(before).get("name"), 0, 0, {}]]]:
            return False
    if not layers or cls(layers[0]) != "InputLayer":
        return False
    ends = [[cfg(layer).get("name"), 0, 0] for layer in (layers[0], layers[-1])]
    return [cfg(config).get("input_layers"), cfg(config).get("output_layers")] == \
        [[ends[0]], [ends[1]]]


def _dims(values: list[Any]) -> Shape:
    if all(type(v) is int and v > 0 for v in values):
        return list(values)
    return None
