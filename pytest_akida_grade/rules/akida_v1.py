"""The Akida 1.0 (AKD1000) static rules: pure functions over layer specs (see specs.py).

Each check returns a list of `Violation`s whose messages a student can act on: they name the
layer and its index, the rule broken, and the fix.

The Akida 1.0 (AKD1000) rules come from BrainChip's "Akida 1.0 hardware constraints" page and
from how cnn2snn/quantizeml turn Keras layers into Akida v1 layers. cnn2snn fuses a convolution
(Conv2D or SeparableConv2D) with the BatchNormalization, MaxPooling2D and ReLU after it into ONE
Akida layer (a "block" below); the first Conv2D becomes the InputConvolutional layer. Before
fusing, quantizeml's sanitize() swaps ReLU -> MaxPool into MaxPool -> ReLU, swaps MaxPool -> BN
into BN -> MaxPool, then folds a BN directly after a conv into its weights.

Two rules are not on BrainChip's page but were found by mapping (their Violations say so and
carry documented=False): a Conv2D with one filter on a one-channel input, which quantizeml turns
into a DepthwiseConv2D, and a Conv2D with more input channels than one CNP holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pytest_akida_grade.results import Violation, in_layer_order
from pytest_akida_grade.rules.specs import (
    BN,
    BOUNDED_RELU_EXAMPLE,
    CNP_MAX_INPUT_CHANNELS,
    FOUND_BY_MAPPING,
    POOL,
    RELU,
    SEPARABLE_INPUT_CHANNELS_MAPPED,
    Block,
    Layer,
    Specs,
    cfg,
    cls,
    describe,
    first_neural,
    fuse,
    input_channels,
    pair,
    size_text,
)

MAX_DENSE_INPUTS = 57334  # FullyConnected: W x H x C of its input
INPUT_CONV_KERNELS = {3: 512, 5: 192, 7: 96}  # kernel -> max filters, 1-channel input
INPUT_CONV_STRIDES = (1, 2, 3)
INPUT_POOL_SIZES = ((1, 1), (1, 2), (2, 1), (2, 2))
INPUT_WIDTH_RANGE = (5, 256)
MIN_INPUT_HEIGHT = 5
CONV_KERNELS = (1, 3, 5, 7)
SEPARABLE_KERNELS = (3, 5, 7)
POOL_SIZES = ((1, 1), (2, 2))

# -------------------------------------------------------------------- Akida 1.0 static rules


def v1_static(layers: Specs, *, weight_bits: int = 4) -> list[Violation]:
    """All static Akida 1.0 (AKD1000) rules, violations in layer order.

    `weight_bits` is the precision the model is quantized at: some limits depend on it.
    """
    blocks, orphans = fuse(layers)
    found: list[Violation] = []
    for rule in V1_RULES:
        if isinstance(rule, _WithBits):
            found += rule.check(layers, blocks, orphans, weight_bits)
        else:
            found += rule(layers, blocks, orphans)
    return in_layer_order(found)


def _v1(layer: Layer | None, rule: str, message: str) -> Violation:
    return Violation.at(f"v1.{rule}", layer, message)


def _measured(layer: Layer, rule: str, message: str) -> Violation:
    return Violation.at(f"v1.{rule}", layer, message, documented=False)


Rule = Callable[[Specs, list[Block], Specs], list[Violation]]


@dataclass(frozen=True)
class _WithBits:
    """A rule that also needs the weight bits."""

    check: Callable[[Specs, list[Block], Specs, int], list[Violation]]


def _input_conv(layers: Specs, blocks: list[Block], _: Specs) -> list[Violation]:
    """The first processing layer becomes InputConvolutional: a Conv2D on the 8-bit image."""
    first = first_neural(layers)
    if first is None:
        return [_v1(None, "input_conv",
                    "The model has no convolution: Akida 1.0 reads the image with an "
                    "InputConvolutional layer, so the first processing layer must be a Conv2D. "
                    "Fix: start the model (after Rescaling) with keras.layers.Conv2D.")]
    if cls(first) != "Conv2D":
        return [_v1(first, "input_conv",
                    f"{describe(first)} is the first processing layer, but Akida 1.0 reads the "
                    "image with an InputConvolutional layer, which only a Conv2D can become "
                    f"(a {cls(first)} cannot). Fix: put a keras.layers.Conv2D before it.")]
    return [_v1(first, "input_conv", f"{describe(first)} is the first convolution, which becomes "
                f"Akida's InputConvolutional layer: {problem}")
            for problem in _input_conv_problems(first)]


def _input_conv_problems(conv: Layer) -> list[str]:
    config = cfg(conv)
    kernel, strides = pair(config.get("kernel_size")), pair(config.get("strides", 1))
    problems = _input_shape_problems(conv.get("input_shape"))
    if kernel is None or len(set(kernel)) != 1 or kernel[0] not in INPUT_CONV_KERNELS:
        problems.append(f"its kernel is {size_text(kernel)}, but it must be 3x3, 5x5 or 7x7. "
                        "Fix: use kernel_size=3, 5 or 7.")
    elif (config.get("filters") or 0) > INPUT_CONV_KERNELS[kernel[0]]:
        limit = INPUT_CONV_KERNELS[kernel[0]]
        problems.append(f"it has {config.get('filters')} filters, but a {kernel[0]}x{kernel[0]} "
                        f"input convolution allows at most {limit}. Fix: use filters <= {limit}.")
    if strides is None or any(s not in INPUT_CONV_STRIDES for s in strides):
        problems.append(f"its stride is {size_text(strides)}, but it must be 1, 2 or 3. "
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


def _input_pool(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
    """InputConvolutional pools 1x1, 1x2, 2x1 or 2x2 with a stride equal to the pool size."""
    pool = blocks[0].pool if blocks and blocks[0].is_input else None
    if pool is None:
        return []
    size, strides = _pool_geometry(pool)
    if size in INPUT_POOL_SIZES and strides == size:
        return []
    return [_v1(pool, "input_pool",
                f"{describe(pool)} pools the first convolution with size {size_text(size)} and "
                f"stride {size_text(strides)}, but Akida's InputConvolutional only pools 1x1, "
                "1x2, 2x1 or 2x2 with a stride equal to the pool size. Fix: use "
                "MaxPooling2D((2, 2)) with the default strides.")]


def _pool_geometry(pool: Layer) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    config = cfg(pool)
    size = pair(config.get("pool_size", 2))
    strides = pair(config.get("strides")) or size  # Keras: strides=None means pool size
    return size, strides


def _conv_params(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
    """Later Conv2D: square 1/3/5/7 kernel, stride 1 (2 only for 3x3), 'same' padding."""
    found = []
    for block in blocks:
        conv = block.conv
        problems = _dilation_problems(conv)
        if cls(conv) == "Conv2D":
            problems += _groups_problems(conv)
            if not block.is_input:
                problems += _kernel_stride_padding_problems(conv, CONV_KERNELS)
        found += [_v1(conv, "conv", f"{describe(conv)}: {problem}") for problem in problems]
    return found


def _separable_params(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
    """SeparableConv2D: square 3/5/7 kernel, stride 1 (2 only for 3x3), 'same' padding."""
    found = []
    for block in blocks:
        conv = block.conv
        if cls(conv) != "SeparableConv2D" or conv is blocks[0].conv:
            continue  # a leading SeparableConv2D is reported by the input_conv rule
        problems = _kernel_stride_padding_problems(conv, SEPARABLE_KERNELS)
        multiplier = cfg(conv).get("depth_multiplier", 1)
        if multiplier != 1:
            problems.append(f"its depth_multiplier is {multiplier}, but Akida's "
                            "SeparableConvolutional only supports 1. Fix: remove depth_multiplier.")
        found += [_v1(conv, "separable_conv", f"{describe(conv)}: {problem}")
                  for problem in problems]
    return found


def _kernel_stride_padding_problems(conv: Layer, kernels: tuple[int, ...]) -> list[str]:
    config = cfg(conv)
    kernel, strides = pair(config.get("kernel_size")), pair(config.get("strides", 1))
    allowed = ", ".join(f"{k}x{k}" for k in kernels)
    problems = []
    if kernel is None or len(set(kernel)) != 1 or kernel[0] not in kernels:
        problems.append(f"its kernel is {size_text(kernel)}, but Akida 1.0 only supports "
                        f"{allowed} here. Fix: use kernel_size={kernels[1]}.")
    if strides not in ((1, 1), (2, 2)):
        problems.append(f"its stride is {size_text(strides)}, but only stride 1 (or 2 with a "
                        "3x3 kernel) is supported. Fix: use strides=1 and MaxPooling2D to "
                        "downsample.")
    elif strides == (2, 2) and kernel != (3, 3):
        problems.append(f"it has stride 2 with a {size_text(kernel)} kernel, but Akida 1.0 "
                        "only supports stride 2 with 3x3 kernels. Fix: use kernel_size=3 or "
                        "strides=1.")
    # cnn2snn builds a 1x1 'valid' conv as 'same' (the outputs are identical), so allow it.
    if config.get("padding") != "same" and kernel != (1, 1):
        problems.append(f"its padding is {config.get('padding')!r}, but after the first layer "
                        "Akida 1.0 only supports 'same' padding. Fix: use padding='same'.")
    return problems


def _dilation_problems(conv: Layer) -> list[str]:
    dilation = pair(cfg(conv).get("dilation_rate", 1))
    if dilation in (None, (1, 1)):
        return []
    return [f"its dilation_rate is {size_text(dilation)}, but Akida has no dilated "
            "convolutions. Fix: remove dilation_rate."]


def _groups_problems(conv: Layer) -> list[str]:
    groups = cfg(conv).get("groups", 1)
    if groups in (None, 1):
        return []
    return [f"its groups is {groups}, but Akida 1.0 only supports ordinary convolutions "
            "(groups=1). Fix: remove groups (use SeparableConv2D for a cheaper convolution)."]


def _pool_params(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
    """After the first layer, pool 1x1 or 2x2 with a stride no larger than the pool size."""
    found = []
    for block in blocks:
        pool = block.pool
        if pool is None or block.is_input:
            continue
        size, strides = _pool_geometry(pool)
        square = strides is not None and len(set(strides)) == 1
        if size in POOL_SIZES and square and strides and size and strides[0] <= size[0]:
            continue
        found.append(_v1(pool, "pool_size",
                         f"{describe(pool)} has pool size {size_text(size)} and stride "
                         f"{size_text(strides)}, but after the first layer Akida 1.0 only pools "
                         "1x1 or 2x2, with equal strides no larger than the pool size. Fix: use "
                         "MaxPooling2D((2, 2))."))
    return found


def _pool_padding(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
    """One Akida layer has one padding, so cnn2snn requires pool padding == conv padding."""
    found = []
    for block in blocks:
        pool = block.pool
        if pool is None:
            continue
        conv_padding = _effective_padding(block.conv)
        pool_padding = cfg(pool).get("padding", "valid")
        if pool_padding != conv_padding:
            found.append(_v1(pool, "pool_padding",
                             f"{describe(pool)} has padding={pool_padding!r} but its convolution "
                             f"{describe(block.conv)} has padding={conv_padding!r}. Akida fuses "
                             "them into one layer with a single padding, so cnn2snn requires them "
                             f"to match. Fix: set padding={conv_padding!r} on the MaxPooling2D."))
    return found


def _effective_padding(conv: Layer) -> str | None:
    kernel = pair(cfg(conv).get("kernel_size"))
    return "same" if kernel == (1, 1) else cfg(conv).get("padding")


def _pool_after_conv(_: Specs, blocks: list[Block], orphans: Specs) -> list[Violation]:
    """Each convolution absorbs at most one MaxPooling2D; a pooling needs a conv before it."""
    found = [_v1(pool, "pool_after_conv",
                 f"{describe(pool)} does not follow a convolution. Akida 1.0 has no standalone "
                 "pooling: a MaxPooling2D must come right after a Conv2D/SeparableConv2D (and "
                 "its optional BatchNormalization/ReLU). Fix: remove it or move it after a "
                 "convolution.")
             for pool in orphans if cls(pool) in POOL]
    for block in blocks:
        found += [_v1(pool, "pool_after_conv",
                      f"{describe(pool)} is a second pooling after {describe(block.conv)}. Akida "
                      "1.0 fuses at most one MaxPooling2D into each convolution. Fix: remove it, "
                      "or put a convolution between the two poolings.")
                  for pool in block.of(POOL)[1:]]
    return found


def _pool_before_classifier(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
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


def _batchnorm_position(_: Specs, blocks: list[Block], orphans: Specs) -> list[Violation]:
    """A BN folds into its conv only if directly after the conv, or after the conv's pooling."""
    found = [_v1(bn, "batchnorm_position",
                 f"{describe(bn)} does not follow a convolution, so it cannot be folded into "
                 "one (Akida 1.0 has no standalone BatchNormalization). Fix: remove it or put it "
                 "right after a convolution, before its ReLU.")
             for bn in orphans if cls(bn) == BN]
    for block in blocks:
        found += [_v1(bn, "batchnorm_position",
                      f"{describe(bn)} comes after {describe(after)}, so quantizeml cannot fold "
                      f"it into {describe(block.conv)}. A BatchNormalization must sit between "
                      "the convolution (or its MaxPooling2D) and the ReLU. Fix: move it right "
                      "after the convolution.")
                  for bn, after in _unfoldable_batchnorms(block)]
    return found


def _unfoldable_batchnorms(block: Block) -> list[tuple[Layer, Layer]]:
    """(BN, offending earlier layer) for each BN with a ReLU or another BN before it."""
    unfoldable = []
    for position, layer in enumerate(block.members):
        if cls(layer) != BN:
            continue
        blocker = next((m for m in block.members[:position] if cls(m) in (RELU, BN)), None)
        if blocker is not None:
            unfoldable.append((layer, blocker))
    return unfoldable


def _relu_per_block(_: Specs, blocks: list[Block], orphans: Specs) -> list[Violation]:
    """Each convolution needs exactly one ReLU: it ends the Akida layer and quantizes outputs."""
    found = [_v1(relu, "relu_after_conv",
                 f"{describe(relu)} does not follow a convolution. On Akida 1.0 a ReLU is part "
                 "of a convolution layer, it cannot stand alone. Fix: remove it or move it "
                 "after a convolution.")
             for relu in orphans if cls(relu) == RELU]
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


def _dense_input_size(layers: Specs, _: list[Block], __: Specs) -> list[Violation]:
    """The FullyConnected classifier takes at most 57334 input values (W x H x C)."""
    flatten = next((layer for layer in layers if cls(layer) == "Flatten"), None)
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


def _flat_size(flatten: Layer) -> int | None:
    shape = flatten.get("output_shape")
    if isinstance(shape, list | tuple) and len(shape) == 1 and isinstance(shape[0], int):
        return shape[0]
    shape = flatten.get("input_shape")
    if isinstance(shape, list | tuple) and shape and all(isinstance(v, int) for v in shape):
        return math.prod(shape)
    return None


# ------------------------------------------------ limits found by mapping (documented=False)


def _one_filter_conv(_: Specs, blocks: list[Block], __: Specs) -> list[Violation]:
    """A Conv2D with 1 filter on 1 channel becomes a DepthwiseConv2D, which v1 cannot run.

    quantizeml's sanitize() rewrites a Conv2D whose input channels == groups == filters as a
    DepthwiseConv2D (conv_to_dw.py). Measured: quantizing fails for a first layer with 1 filter
    (2 filters map), converting fails mid-network for 1 filter on 1 channel (1 filter on 2
    channels and 2 filters on 1 channel map), at every kernel size and supported scheme.
    """
    return [_measured(block.conv, "one_filter_conv", _one_filter_message(block))
            for block in blocks
            if cls(block.conv) == "Conv2D" and cfg(block.conv).get("filters") == 1
            and cfg(block.conv).get("groups", 1) in (None, 1)
            and input_channels(block.conv) == 1]


def _one_filter_message(block: Block) -> str:
    first = (" (and the first layer must stay a Conv2D to read the image)"
             if block.is_input else "")
    return (f"{describe(block.conv)} has 1 filter on a 1-channel input. quantizeml turns such a "
            "Conv2D into a DepthwiseConv2D, which Akida 1.0 cannot run" + first + ", so "
            f"quantizing or converting the model fails ({FOUND_BY_MAPPING}). Fix: give it at "
            "least 2 filters (filters=2 or more).")


def _cnp_input_channels(_: Specs, blocks: list[Block], __: Specs,
                        weight_bits: int) -> list[Violation]:
    """A Conv2D after the first layer holds its weights in one CNP: input channels are capped.

    The caps per weight bits and kernel are in specs.CNP_MAX_INPUT_CHANNELS (measured there);
    other bit widths are not measured, so nothing is reported for them.
    """
    limits = CNP_MAX_INPUT_CHANNELS.get(weight_bits) if type(weight_bits) is int else None
    if limits is None:
        return []
    found = []
    for block in blocks:
        conv, channels = block.conv, input_channels(block.conv)
        kernel = pair(cfg(conv).get("kernel_size"))
        if cls(conv) != "Conv2D" or block.is_input or channels is None or kernel is None:
            continue
        if len(set(kernel)) == 1 and kernel[0] in limits and channels > limits[kernel[0]]:
            found.append(_measured(conv, "cnp_input_channels",
                                   _cnp_message(conv, channels, kernel[0], weight_bits)))
    return found


def _cnp_message(conv: Layer, channels: int, kernel: int, weight_bits: int) -> str:
    limit = CNP_MAX_INPUT_CHANNELS[weight_bits][kernel]
    fixes = [f"at most {limit} input channels (fewer filters in the convolution before it)"]
    two_bits = CNP_MAX_INPUT_CHANNELS[2][kernel]
    if weight_bits > 2 and channels <= two_bits:
        fixes.append(f"2-bit weights (W2A4 allows {two_bits} here)")
    if channels <= SEPARABLE_INPUT_CHANNELS_MAPPED:
        fixes.append(f"a SeparableConv2D (kernel 3, 5 or 7), which maps with up to "
                     f"{SEPARABLE_INPUT_CHANNELS_MAPPED} input channels")
    return (f"{describe(conv)} reads {channels} input channels with a {kernel}x{kernel} kernel, "
            f"but at {weight_bits}-bit weights one Akida 1.0 convolution NP (CNP) holds the "
            f"weights of at most {limit} input channels for this kernel ({FOUND_BY_MAPPING}; "
            "the mapper says \"Filter size is too big to fit in a CNP\"). Fix: use "
            + ", or ".join(fixes) + ".")


V1_RULES: tuple[Rule | _WithBits, ...] = (
    _input_conv, _input_pool, _conv_params, _separable_params, _pool_params, _pool_padding,
    _pool_after_conv, _pool_before_classifier, _batchnorm_position, _relu_per_block,
    _dense_input_size, _one_filter_conv, _WithBits(_cnp_input_channels),
)
