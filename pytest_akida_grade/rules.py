"""Pure design rules over layer specs (docs/contracts.md): no TensorFlow, Keras or Akida here.

Each check returns a list of `Violation`s whose messages a student can act on: they name the
layer and its index, the rule broken, and the fix.

The Akida 1.0 (AKD1000) rules come from BrainChip's "Akida 1.0 hardware constraints" page and
from how cnn2snn/quantizeml turn Keras layers into Akida v1 layers. cnn2snn fuses a convolution
(Conv2D or SeparableConv2D) with the BatchNormalization, MaxPooling2D and ReLU after it into ONE
Akida layer (a "block" below); the first Conv2D becomes the InputConvolutional layer. Before
fusing, quantizeml's sanitize() swaps ReLU -> MaxPool into MaxPool -> ReLU, swaps MaxPool -> BN
into BN -> MaxPool, then folds a BN directly after a conv into its weights.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CHECK_LAYER_WHITELIST = "layer_whitelist"
CHECK_RELU_BOUNDED = "relu_bounded"
CHECK_QUANTIZATION_SCHEME = "quantization_scheme"
CHECK_V1_CONSTRAINTS = "v1_constraints"

SUPPORTED_SCHEMES = ((4, 4), (4, 1), (2, 4))

CONV = ("Conv2D", "SeparableConv2D")
POOL = ("MaxPooling2D", "MaxPool2D")  # MaxPool2D is an alias; class_name is usually the former
BN = "BatchNormalization"
RELU = "ReLU"
FUSABLE = (*POOL, BN, RELU)
ALLOWED_ANYWHERE = (*CONV, *POOL, BN, RELU)
# Layers that end a conv block; anything else unknown is skipped (layer_whitelist reports it).
BLOCK_BOUNDARY = ("Flatten", "Dense", "Rescaling", "InputLayer")

NUM_CLASSES = 10
MAX_DENSE_INPUTS = 57334  # FullyConnected: W x H x C of its input
INPUT_CONV_KERNELS = {3: 512, 5: 192, 7: 96}  # kernel -> max filters, 1-channel input
INPUT_CONV_STRIDES = (1, 2, 3)
INPUT_POOL_SIZES = ((1, 1), (1, 2), (2, 1), (2, 2))
INPUT_WIDTH_RANGE = (5, 256)
MIN_INPUT_HEIGHT = 5
CONV_KERNELS = (1, 3, 5, 7)
SEPARABLE_KERNELS = (3, 5, 7)
POOL_SIZES = ((1, 1), (2, 2))

ALLOWED_TEXT = (
    "Allowed layers are Conv2D, SeparableConv2D, MaxPooling2D, ReLU and BatchNormalization, "
    "plus the template's scaffolding: one leading Rescaling and a final Flatten + Dense(10)."
)
BOUNDED_RELU_EXAMPLE = "keras.layers.ReLU(max_value=6.0)"


Specs = list[dict]


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    layer_index: int | None = None
    layer_name: str | None = None


def describe(layer: dict) -> str:
    """A human name for a layer, e.g. "layer 7 'max_pooling2d_1' (MaxPooling2D)"."""
    return f"layer {layer.get('index')} '{layer.get('name')}' ({layer.get('class_name')})"


def _violation(rule: str, layer: dict | None, message: str) -> Violation:
    if layer is None:
        return Violation(rule, message)
    return Violation(rule, message, layer.get("index"), layer.get("name"))


def _cls(layer: dict) -> str:
    return str(layer.get("class_name", ""))


def _cfg(layer: dict) -> dict:
    return layer.get("config") or {}


def _pair(value: object) -> tuple[int, ...] | None:
    """Keras stores sizes as int or [h, w]; normalise to a tuple (None stays None)."""
    if value is None:
        return None
    try:
        if isinstance(value, int | float):
            return (int(value), int(value))
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None  # malformed config: let the rule report it as unsupported


def _size_text(size: tuple[int, ...] | None) -> str:
    return "x".join(str(v) for v in size) if size else "?"


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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


def layer_whitelist(layers: list[dict]) -> list[Violation]:
    """Only the assignment's layers, and the scaffolding only where the template has it."""
    body = [layer for layer in layers if _cls(layer) != "InputLayer"]
    found = [_whitelist_violation(layer, position, body) for position, layer in enumerate(body)]
    found += _stray_input_layers(layers)
    found.append(_missing_classifier(body))
    return sorted((v for v in found if v), key=_order)


def _whitelist_violation(layer: dict, position: int, body: list[dict]) -> Violation | None:
    cls = _cls(layer)
    if cls in ALLOWED_ANYWHERE:
        return None
    if cls == "Rescaling":
        problem = _rescaling_problem(position)
    elif cls == "Flatten":
        problem = _flatten_problem(position, body)
    elif cls == "Dense":
        problem = _dense_problem(layer, position, body)
    else:
        problem = f"{cls} is not an allowed layer. {ALLOWED_TEXT} Fix: {_replacement(layer)}."
    return _violation(CHECK_LAYER_WHITELIST, layer, f"{describe(layer)}: {problem}") if problem \
        else None


def _replacement(layer: dict) -> str:
    if _cls(layer) == "Activation":
        if _activation_name(layer) == "softmax":
            return REPLACEMENTS["Softmax"]
        return f"use {BOUNDED_RELU_EXAMPLE} instead (Akida 1.0 only has a bounded ReLU)"
    return REPLACEMENTS.get(_cls(layer), DEFAULT_REPLACEMENT)


def _rescaling_problem(position: int) -> str | None:
    if position == 0:
        return None
    return ("Rescaling is only allowed once, as the very first layer (it scales the 0-255 "
            "pixels for the input convolution). Fix: remove this one.")


def _flatten_problem(position: int, body: list[dict]) -> str | None:
    if position == len(body) - 2 and _cls(body[-1]) == "Dense":
        return None
    return ("Flatten is only allowed right before the final Dense(10) classifier, as second to "
            "last layer. Fix: remove it, or move it to just before the final Dense(10).")


def _dense_problem(layer: dict, position: int, body: list[dict]) -> str | None:
    if position != len(body) - 1:
        return ("a hidden Dense layer is not allowed; the only Dense allowed is the final "
                "Dense(10) classifier after Flatten. Fix: remove it (use convolutions to add "
                "capacity).")
    if position == 0 or _cls(body[position - 1]) != "Flatten":
        return ("the final Dense must come right after a Flatten layer. Fix: add "
                "keras.layers.Flatten() just before it.")
    units = _cfg(layer).get("units")
    if units != NUM_CLASSES:
        return (f"the final Dense must have {NUM_CLASSES} units, one per digit, but has {units}. "
                f"Fix: use keras.layers.Dense({NUM_CLASSES}).")
    return None


def _stray_input_layers(layers: list[dict]) -> list[Violation | None]:
    leading = next((i for i, layer in enumerate(layers) if _cls(layer) != "InputLayer"),
                   len(layers))
    return [
        _violation(CHECK_LAYER_WHITELIST, layer,
                   f"{describe(layer)}: an InputLayer is only allowed as the model's input. "
                   "Fix: remove it.")
        for layer in layers[leading:] if _cls(layer) == "InputLayer"
    ]


def _missing_classifier(body: list[dict]) -> Violation | None:
    if body and _cls(body[-1]) == "Dense":
        return None  # a misplaced final Dense is reported on the Dense itself
    last = f" (it ends with {describe(body[-1])})" if body else ""
    return Violation(
        CHECK_LAYER_WHITELIST,
        f"The model must end with the template's classifier, keras.layers.Flatten() followed "
        f"by keras.layers.Dense({NUM_CLASSES}){last}. Fix: add them as the last two layers.",
    )


# -------------------------------------------------------------------------------- bounded ReLU


def relu_bounded(layers: list[dict]) -> list[Violation]:
    """Every ReLU is a plain clipped ReLU with a finite max_value; no activations inside layers."""
    found: list[Violation | None] = []
    for layer in layers:
        if _cls(layer) == RELU:
            found += [_relu_cap_problem(layer), _relu_shape_problem(layer)]
        elif _cls(layer) != "Activation":  # a standalone Activation is a whitelist matter
            found.append(_inner_activation_problem(layer))
    return [v for v in found if v]


def _relu_cap_problem(layer: dict) -> Violation | None:
    cap = _cfg(layer).get("max_value")
    if _is_number(cap) and math.isfinite(float(cap)) and float(cap) > 0:
        return None
    return _violation(
        CHECK_RELU_BOUNDED, layer,
        f"{describe(layer)} has max_value={cap!r}, but Akida 1.0 only supports a ReLU with a "
        f"finite, positive upper bound (its outputs are quantized between 0 and that bound). "
        f"Fix: use {BOUNDED_RELU_EXAMPLE}.",
    )


def _relu_shape_problem(layer: dict) -> Violation | None:
    config = _cfg(layer)
    slope, threshold = config.get("negative_slope", 0), config.get("threshold", 0)
    if slope in (0, None) and threshold in (0, None):
        return None
    return _violation(
        CHECK_RELU_BOUNDED, layer,
        f"{describe(layer)} has negative_slope={slope!r} and threshold={threshold!r}, but Akida "
        "1.0's ReLU is a plain clipped ReLU, min(max(x, 0), max_value): quantizeml requires "
        f"both to be 0. Fix: use {BOUNDED_RELU_EXAMPLE} with no negative_slope or threshold.",
    )


def _activation_name(layer: dict) -> str | None:
    activation = _cfg(layer).get("activation")
    if isinstance(activation, dict):  # a serialized activation object
        inner = activation.get("config")
        activation = inner.get("name") if isinstance(inner, dict) else activation.get("class_name")
    return None if activation in (None, "linear") else str(activation)


def _inner_activation_problem(layer: dict) -> Violation | None:
    activation = _activation_name(layer)
    if activation is None:
        return None
    if _cls(layer) == "Dense":
        fix = ("Akida outputs the raw class potentials and the grader takes their argmax, so the "
               f"classifier must not have an activation. Fix: remove activation={activation!r} "
               "from the Dense (train with from_logits=True).")
    else:
        fix = (f"Akida 1.0 needs every activation as a separate, bounded ReLU layer. Fix: remove "
               f"activation={activation!r} from the layer and add {BOUNDED_RELU_EXAMPLE} after it.")
    return _violation(CHECK_RELU_BOUNDED, layer,
                      f"{describe(layer)} has activation={activation!r} built in. {fix}")


# -------------------------------------------------------------------------- quantization scheme


def _scheme_text(scheme: tuple[int, int]) -> str:
    return f"W{scheme[0]}A{scheme[1]}"


SUPPORTED_TEXT = ", ".join(_scheme_text(s) for s in SUPPORTED_SCHEMES)


def quantization_scheme(weight_bits: object, activation_bits: object) -> list[Violation]:
    """(WEIGHT_BITS, ACTIVATION_BITS) must be one of Akida 1.0's low-precision schemes."""
    found = [_bits_type_problem("WEIGHT_BITS", weight_bits),
             _bits_type_problem("ACTIVATION_BITS", activation_bits)]
    if any(found):
        return [v for v in found if v]
    scheme = (operator.index(weight_bits), operator.index(activation_bits))
    if scheme in SUPPORTED_SCHEMES:
        return []
    return [Violation(
        CHECK_QUANTIZATION_SCHEME,
        f"You declared WEIGHT_BITS={scheme[0]}, ACTIVATION_BITS={scheme[1]} "
        f"({_scheme_text(scheme)}), but Akida 1.0 only supports {SUPPORTED_TEXT}. "
        "Fix: set WEIGHT_BITS and ACTIVATION_BITS to one of these pairs.",
    )]


def _bits_type_problem(name: str, value: object) -> Violation | None:
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        try:
            operator.index(value)
            return None
        except TypeError:
            pass
    return Violation(
        CHECK_QUANTIZATION_SCHEME,
        f"{name} must be a whole number (an int such as 4), but you declared {value!r} "
        f"({type(value).__name__}). Akida 1.0 supports {SUPPORTED_TEXT}. "
        f"Fix: write e.g. {name} = 4 at module level.",
    )


# -------------------------------------------------------------------- Akida 1.0 static rules


@dataclass
class _Block:
    """One future Akida layer: a convolution and the layers cnn2snn fuses into it."""

    conv: dict
    members: list[dict] = field(default_factory=list)
    is_input: bool = False

    def of(self, classes: Iterable[str] | str) -> list[dict]:
        wanted = (classes,) if isinstance(classes, str) else tuple(classes)
        return [layer for layer in self.members if _cls(layer) in wanted]

    @property
    def pool(self) -> dict | None:
        pools = self.of(POOL)
        return pools[0] if pools else None


def _fuse(layers: list[dict]) -> tuple[list[_Block], list[dict]]:
    """Group layers into conv blocks; BN/pool/ReLU that no conv can absorb are orphans."""
    blocks: list[_Block] = []
    orphans: list[dict] = []
    current: _Block | None = None
    for layer in layers:
        cls = _cls(layer)
        if cls in CONV:
            current = _Block(layer)
            blocks.append(current)
        elif cls in FUSABLE:
            (current.members if current else orphans).append(layer)
        elif cls in BLOCK_BOUNDARY:
            current = None
    first = _first_neural(layers)
    if blocks and first is blocks[0].conv and _cls(first) == "Conv2D":
        blocks[0].is_input = True
    return blocks, orphans


def _first_neural(layers: list[dict]) -> dict | None:
    return next((layer for layer in layers if _cls(layer) in (*CONV, "Dense")), None)


def v1_static(layers: list[dict]) -> list[Violation]:
    """All static Akida 1.0 (AKD1000) rules, violations in layer order."""
    blocks, orphans = _fuse(layers)
    found: list[Violation] = []
    for rule in V1_RULES:
        found += rule(layers, blocks, orphans)
    return sorted(found, key=_order)


def _order(violation: Violation) -> tuple[bool, int]:
    index = violation.layer_index
    return (index is None, index if index is not None else 0)


def _v1(layer: dict | None, rule: str, message: str) -> Violation:
    return _violation(f"v1.{rule}", layer, message)


Rule = Callable[[list[dict], list[_Block], list[dict]], list[Violation]]


def _input_conv(layers: list[dict], blocks: list[_Block], _: list[dict]) -> list[Violation]:
    """The first processing layer becomes InputConvolutional: a Conv2D on the 8-bit image."""
    first = _first_neural(layers)
    if first is None:
        return [_v1(None, "input_conv",
                    "The model has no convolution: Akida 1.0 reads the image with an "
                    "InputConvolutional layer, so the first processing layer must be a Conv2D. "
                    "Fix: start the model (after Rescaling) with keras.layers.Conv2D.")]
    if _cls(first) != "Conv2D":
        return [_v1(first, "input_conv",
                    f"{describe(first)} is the first processing layer, but Akida 1.0 reads the "
                    "image with an InputConvolutional layer, which only a Conv2D can become "
                    f"(a {_cls(first)} cannot). Fix: put a keras.layers.Conv2D before it.")]
    return [_v1(first, "input_conv", f"{describe(first)} is the first convolution, which becomes "
                f"Akida's InputConvolutional layer: {problem}")
            for problem in _input_conv_problems(first)]


def _input_conv_problems(conv: dict) -> list[str]:
    config = _cfg(conv)
    kernel, strides = _pair(config.get("kernel_size")), _pair(config.get("strides", 1))
    problems = _input_shape_problems(conv.get("input_shape"))
    if kernel is None or len(set(kernel)) != 1 or kernel[0] not in INPUT_CONV_KERNELS:
        problems.append(f"its kernel is {_size_text(kernel)}, but it must be 3x3, 5x5 or 7x7. "
                        "Fix: use kernel_size=3, 5 or 7.")
    elif (config.get("filters") or 0) > INPUT_CONV_KERNELS[kernel[0]]:
        limit = INPUT_CONV_KERNELS[kernel[0]]
        problems.append(f"it has {config.get('filters')} filters, but a {kernel[0]}x{kernel[0]} "
                        f"input convolution allows at most {limit}. Fix: use filters <= {limit}.")
    if strides is None or any(s not in INPUT_CONV_STRIDES for s in strides):
        problems.append(f"its stride is {_size_text(strides)}, but it must be 1, 2 or 3. "
                        "Fix: use strides=1, 2 or 3.")
    if config.get("padding") not in ("same", "valid"):
        problems.append(f"its padding is {config.get('padding')!r}, but it must be 'same' or "
                        "'valid'. Fix: use padding='same'.")
    return problems


def _input_shape_problems(shape: object) -> list[str]:
    if not isinstance(shape, list | tuple) or len(shape) != 3 or not all(
            isinstance(v, int) for v in shape):
        return []  # unknown shape: nothing we can check statically
    height, width, channels = shape
    problems = []
    if channels != 1:
        problems.append(f"its input has {channels} channels, but MNIST images are 28x28x1. "
                        "Fix: use input_shape=(28, 28, 1).")
    low, high = INPUT_WIDTH_RANGE
    if not low <= width <= high or height < MIN_INPUT_HEIGHT:
        problems.append(f"its input is {height}x{width} (height x width), but it needs a width "
                        f"in [{low}, {high}] and a height of at least {MIN_INPUT_HEIGHT}. "
                        "Fix: feed the 28x28 image straight into it.")
    return problems


def _input_pool(_: list[dict], blocks: list[_Block], __: list[dict]) -> list[Violation]:
    """InputConvolutional pools 1x1, 1x2, 2x1 or 2x2 with a stride equal to the pool size."""
    pool = blocks[0].pool if blocks and blocks[0].is_input else None
    if pool is None:
        return []
    size, strides = _pool_geometry(pool)
    if size in INPUT_POOL_SIZES and strides == size:
        return []
    return [_v1(pool, "input_pool",
                f"{describe(pool)} pools the first convolution with size {_size_text(size)} and "
                f"stride {_size_text(strides)}, but Akida's InputConvolutional only pools 1x1, "
                "1x2, 2x1 or 2x2 with a stride equal to the pool size. Fix: use "
                "MaxPooling2D((2, 2)) with the default strides.")]


def _pool_geometry(pool: dict) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    config = _cfg(pool)
    size = _pair(config.get("pool_size", 2))
    strides = _pair(config.get("strides")) or size  # Keras: strides=None means pool size
    return size, strides


def _conv_params(_: list[dict], blocks: list[_Block], __: list[dict]) -> list[Violation]:
    """Later Conv2D: square 1/3/5/7 kernel, stride 1 (2 only for 3x3), 'same' padding."""
    found = []
    for block in blocks:
        conv = block.conv
        problems = _dilation_problems(conv)
        if _cls(conv) == "Conv2D":
            problems += _groups_problems(conv)
            if not block.is_input:
                problems += _kernel_stride_padding_problems(conv, CONV_KERNELS)
        found += [_v1(conv, "conv", f"{describe(conv)}: {problem}") for problem in problems]
    return found


def _separable_params(_: list[dict], blocks: list[_Block], __: list[dict]) -> list[Violation]:
    """SeparableConv2D: square 3/5/7 kernel, stride 1 (2 only for 3x3), 'same' padding."""
    found = []
    for block in blocks:
        conv = block.conv
        if _cls(conv) != "SeparableConv2D" or conv is blocks[0].conv:
            continue  # a leading SeparableConv2D is reported by the input_conv rule
        problems = _kernel_stride_padding_problems(conv, SEPARABLE_KERNELS)
        multiplier = _cfg(conv).get("depth_multiplier", 1)
        if multiplier != 1:
            problems.append(f"its depth_multiplier is {multiplier}, but Akida's "
                            "SeparableConvolutional only supports 1. Fix: remove depth_multiplier.")
        found += [_v1(conv, "separable_conv", f"{describe(conv)}: {problem}")
                  for problem in problems]
    return found


def _kernel_stride_padding_problems(conv: dict, kernels: tuple[int, ...]) -> list[str]:
    config = _cfg(conv)
    kernel, strides = _pair(config.get("kernel_size")), _pair(config.get("strides", 1))
    allowed = ", ".join(f"{k}x{k}" for k in kernels)
    problems = []
    if kernel is None or len(set(kernel)) != 1 or kernel[0] not in kernels:
        problems.append(f"its kernel is {_size_text(kernel)}, but Akida 1.0 only supports "
                        f"{allowed} here. Fix: use kernel_size={kernels[1]}.")
    if strides not in ((1, 1), (2, 2)):
        problems.append(f"its stride is {_size_text(strides)}, but only stride 1 (or 2 with a "
                        "3x3 kernel) is supported. Fix: use strides=1 and MaxPooling2D to "
                        "downsample.")
    elif strides == (2, 2) and kernel != (3, 3):
        problems.append(f"it has stride 2 with a {_size_text(kernel)} kernel, but Akida 1.0 "
                        "only supports stride 2 with 3x3 kernels. Fix: use kernel_size=3 or "
                        "strides=1.")
    # cnn2snn builds a 1x1 'valid' conv as 'same' (the outputs are identical), so allow it.
    if config.get("padding") != "same" and kernel != (1, 1):
        problems.append(f"its padding is {config.get('padding')!r}, but after the first layer "
                        "Akida 1.0 only supports 'same' padding. Fix: use padding='same'.")
    return problems


def _dilation_problems(conv: dict) -> list[str]:
    dilation = _pair(_cfg(conv).get("dilation_rate", 1))
    if dilation in (None, (1, 1)):
        return []
    return [f"its dilation_rate is {_size_text(dilation)}, but Akida has no dilated "
            "convolutions. Fix: remove dilation_rate."]


def _groups_problems(conv: dict) -> list[str]:
    groups = _cfg(conv).get("groups", 1)
    if groups in (None, 1):
        return []
    return [f"its groups is {groups}, but Akida 1.0 only supports ordinary convolutions "
            "(groups=1). Fix: remove groups (use SeparableConv2D for a cheaper convolution)."]


def _pool_params(_: list[dict], blocks: list[_Block], __: list[dict]) -> list[Violation]:
    """After the first layer, pool 1x1 or 2x2 with a stride no larger than the pool size."""
    found = []
    for block in blocks:
        pool = block.pool
        if pool is None or block.is_input:
            continue
        size, strides = _pool_geometry(pool)
        square = strides is not None and len(set(strides)) == 1
        if size in POOL_SIZES and square and strides[0] <= size[0]:
            continue
        found.append(_v1(pool, "pool_size",
                         f"{describe(pool)} has pool size {_size_text(size)} and stride "
                         f"{_size_text(strides)}, but after the first layer Akida 1.0 only pools "
                         "1x1 or 2x2, with equal strides no larger than the pool size. Fix: use "
                         "MaxPooling2D((2, 2))."))
    return found


def _pool_padding(_: list[dict], blocks: list[_Block], __: list[dict]) -> list[Violation]:
    """One Akida layer has one padding, so cnn2snn requires pool padding == conv padding."""
    found = []
    for block in blocks:
        pool = block.pool
        if pool is None:
            continue
        conv_padding = _effective_padding(block.conv)
        pool_padding = _cfg(pool).get("padding", "valid")
        if pool_padding != conv_padding:
            found.append(_v1(pool, "pool_padding",
                             f"{describe(pool)} has padding={pool_padding!r} but its convolution "
                             f"{describe(block.conv)} has padding={conv_padding!r}. Akida fuses "
                             "them into one layer with a single padding, so cnn2snn requires them "
                             f"to match. Fix: set padding={conv_padding!r} on the MaxPooling2D."))
    return found


def _effective_padding(conv: dict) -> str | None:
    kernel = _pair(_cfg(conv).get("kernel_size"))
    return "same" if kernel == (1, 1) else _cfg(conv).get("padding")


def _pool_after_conv(_: list[dict], blocks: list[_Block], orphans: list[dict]) -> list[Violation]:
    """Each convolution absorbs at most one MaxPooling2D; a pooling needs a conv before it."""
    found = [_v1(pool, "pool_after_conv",
                 f"{describe(pool)} does not follow a convolution. Akida 1.0 has no standalone "
                 "pooling: a MaxPooling2D must come right after a Conv2D/SeparableConv2D (and "
                 "its optional BatchNormalization/ReLU). Fix: remove it or move it after a "
                 "convolution.")
             for pool in orphans if _cls(pool) in POOL]
    for block in blocks:
        found += [_v1(pool, "pool_after_conv",
                      f"{describe(pool)} is a second pooling after {describe(block.conv)}. Akida "
                      "1.0 fuses at most one MaxPooling2D into each convolution. Fix: remove it, "
                      "or put a convolution between the two poolings.")
                  for pool in block.of(POOL)[1:]]
    return found


def _pool_before_classifier(_: Specs, blocks: list[_Block], __: Specs) -> list[Violation]:
    """A Convolutional layer with max pooling must be followed by another convolution."""
    last = blocks[-1] if blocks else None
    # The AKD1000 mapper accepts InputConvolutional + pooling -> FullyConnected; the rule is
    # only on Convolutional/SeparableConvolutional layers.
    if last is None or last.is_input or last.pool is None:
        return []
    pool = last.pool
    return [_v1(pool, "pool_before_classifier",
                f"{describe(pool)} max-pools the last convolution {describe(last.conv)}, so "
                "nothing but the classifier follows it. On Akida 1.0 a convolution with max "
                "pooling must be followed by another Conv2D or SeparableConv2D (the hardware "
                "refuses to map it otherwise). Fix: add e.g. keras.layers.Conv2D(..., "
                "padding='same') + keras.layers.ReLU(max_value=...) after it, or remove this "
                "pooling.")]


def _batchnorm_position(_: Specs, blocks: list[_Block], orphans: Specs) -> list[Violation]:
    """A BN folds into its conv only if directly after the conv, or after the conv's pooling."""
    found = [_v1(bn, "batchnorm_position",
                 f"{describe(bn)} does not follow a convolution, so it cannot be folded into "
                 "one (Akida 1.0 has no standalone BatchNormalization). Fix: remove it or put it "
                 "right after a convolution, before its ReLU.")
             for bn in orphans if _cls(bn) == BN]
    for block in blocks:
        found += [_v1(bn, "batchnorm_position",
                      f"{describe(bn)} comes after {describe(after)}, so quantizeml cannot fold "
                      f"it into {describe(block.conv)}. A BatchNormalization must sit between "
                      "the convolution (or its MaxPooling2D) and the ReLU. Fix: move it right "
                      "after the convolution.")
                  for bn, after in _unfoldable_batchnorms(block)]
    return found


def _unfoldable_batchnorms(block: _Block) -> list[tuple[dict, dict]]:
    """(BN, offending earlier layer) for each BN with a ReLU or another BN before it."""
    unfoldable = []
    for position, layer in enumerate(block.members):
        if _cls(layer) != BN:
            continue
        blocker = next((m for m in block.members[:position] if _cls(m) in (RELU, BN)), None)
        if blocker is not None:
            unfoldable.append((layer, blocker))
    return unfoldable


def _relu_per_block(_: list[dict], blocks: list[_Block], orphans: list[dict]) -> list[Violation]:
    """Each convolution needs exactly one ReLU: it ends the Akida layer and quantizes outputs."""
    found = [_v1(relu, "relu_after_conv",
                 f"{describe(relu)} does not follow a convolution. On Akida 1.0 a ReLU is part "
                 "of a convolution layer, it cannot stand alone. Fix: remove it or move it "
                 "after a convolution.")
             for relu in orphans if _cls(relu) == RELU]
    for block in blocks:
        relus = block.of(RELU)
        if not relus:
            found.append(_v1(block.conv, "relu_after_conv",
                             f"{describe(block.conv)} has no ReLU after it. Every Akida 1.0 "
                             "convolution layer ends with a bounded ReLU (its quantized output). "
                             f"Fix: add {BOUNDED_RELU_EXAMPLE} after it."))
        found += [_v1(relu, "relu_after_conv",
                      f"{describe(relu)} is a second ReLU after {describe(block.conv)}; Akida "
                      "1.0 needs a convolution between two activations. Fix: remove it.")
                  for relu in relus[1:]]
    return found


def _dense_input_size(layers: list[dict], _: list[_Block], __: list[dict]) -> list[Violation]:
    """The FullyConnected classifier takes at most 57334 input values (W x H x C)."""
    flatten = next((layer for layer in layers if _cls(layer) == "Flatten"), None)
    if flatten is None:
        return []
    size = _flat_size(flatten)
    if size is None or size <= MAX_DENSE_INPUTS:
        return []
    return [_v1(flatten, "dense_input_size",
                f"{describe(flatten)} gives the Dense classifier {size} inputs, but Akida 1.0's "
                f"FullyConnected layer accepts at most {MAX_DENSE_INPUTS} (width x height x "
                "channels). Fix: shrink the feature map with MaxPooling2D or stride 2, or use "
                "fewer filters in the last convolution.")]


def _flat_size(flatten: dict) -> int | None:
    shape = flatten.get("output_shape")
    if isinstance(shape, list | tuple) and len(shape) == 1 and isinstance(shape[0], int):
        return shape[0]
    shape = flatten.get("input_shape")
    if isinstance(shape, list | tuple) and shape and all(isinstance(v, int) for v in shape):
        return math.prod(shape)
    return None


V1_RULES: tuple[Rule, ...] = (
    _input_conv, _input_pool, _conv_params, _separable_params, _pool_params, _pool_padding,
    _pool_after_conv, _pool_before_classifier, _batchnorm_position, _relu_per_block,
    _dense_input_size,
)
