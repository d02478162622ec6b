"""Plain words for the Akida toolchain's refusals: quantizeml/cnn2snn errors and the mapper's.

The tools' messages say what failed in their own terms, sometimes blaming the layer next to the
culprit. Each explanation names the layer, the limit it hits and the fix, then keeps the tools'
own words (students and TAs search for them). The numbers come from specs (measured there).

Pure: stdlib and rules.specs only. Both functions are total: any string in, a string out.
"""

from __future__ import annotations

import math
import re

from pytest_akida_grade.rules.specs import (
    AKD1000_NPS,
    CNP_MAX_INPUT_CHANNELS,
    MAPPER_CNP1_NPS,
    SEPARABLE_INPUT_CHANNELS_MAPPED,
    Layer,
    Specs,
    by_name,
    cfg,
    cls,
    describe,
    input_channels,
    pair,
)

FIRST_LAYER = re.compile(r"only possible if first layer \(([^)]+)\) was one of")
DEPTHWISE_BLOCK = re.compile(
    r"Invalid block found during conversion:\s*QuantizedDepthwiseConv2D \(([^)]+)\)")
HEADER = re.compile(r"^\s*Cannot map layer '([^']+)'[.:]?\s*")
BULLET = re.compile(r"^\s*\*\s*Layer '([^']+)':\s*(.*?)\s*$")
FILTER_SIZE = "Filter size is too big to fit in a CNP"
COMPONENTS = re.compile(r"Not enough hardware components of type (\w+) available\. "
                        r"(\d+) are needed but (\d+) are available")
POOL_FOLLOWED = re.compile(r"must be followed by another convolutional.*?"
                           r"Layer '([^']+)' has max pooling", re.S)
# Said of the layer before the one that could not be mapped: a symptom, never the lead.
SEQUENCE_END = "cannot be the last layer of a sequence"

Issue = tuple[str | None, str]  # (layer name the mapper blames, its words)


# ------------------------------------------------------------------------------ conversion


def explain_conversion_error(message: str, layers: Specs) -> str:
    """The student-facing text for a quantizeml/cnn2snn failure; unknown ones stay raw."""
    try:
        return _explain_conversion(str(message), layers)
    except Exception:  # a malformed spec must never hide the tools' own words
        return str(message)


def _explain_conversion(message: str, layers: Specs) -> str:
    if match := DEPTHWISE_BLOCK.search(message):
        return f"{_one_filter(match.group(1), layers, first=False)} (cnn2snn said: {message})"
    if match := FIRST_LAYER.search(message):
        name = match.group(1)
        layer = by_name(layers, name)
        if layer is None or cls(layer) == "Conv2D":
            return f"{_one_filter(name, layers, first=True)} (quantizeml said: {message})"
        return (f"{describe(layer)} is the first processing layer, but quantizeml only reads the "
                "8-bit image into a Conv2D. Fix: start the model (after Rescaling) with a "
                f"keras.layers.Conv2D with at least 2 filters. (quantizeml said: {message})")
    return (f"{_blamed(message, layers)} cannot be converted for Akida 1.0: quantizeml and "
            f"cnn2snn support only its own layer patterns. {PATTERN_FIX} (the Akida tools "
            f"said: {message})")


def overflowing(layer: Layer, largest: float, limit: float) -> str:
    """Why no layer after `layer` can be quantized: its outputs on the calibration images are not
    finite, or reach `largest` (beyond `limit`). Said before any layer pattern is blamed: the
    tools then fail on a later, innocent layer."""
    values = "are not finite (they overflow float32)" if not math.isfinite(largest) \
        else f"reach {largest:.3g} (beyond {limit:.0e})"
    fix = ("Fix: its scale (or offset) is far too large: scale the 0..255 image to small "
           "numbers, keras.layers.Rescaling(1. / 255) as in the template" if cls(layer) ==
           "Rescaling" else "Fix: its weights or settings are far too large: check them, or "
           "retrain with a lower learning rate")
    return (f"{describe(layer)}: its outputs overflow: on the calibration images they {values}, "
            f"so no layer after it can be quantized for Akida 1.0. {fix}")


PATTERN_FIX = ("Fix: keep to the template's pattern: convolution blocks (Conv2D or "
               "SeparableConv2D, optional BatchNormalization, MaxPooling2D, "
               "ReLU(max_value=...)), then Flatten and Dense(10).")


def _blamed(message: str, layers: Specs) -> str:
    """The layer a tool's message names (the first one it mentions), or "the model"."""
    named = [(message.find(f"{layer.get('name')}"), layer) for layer in layers
             if layer.get("name") and re.search(rf"\b{re.escape(str(layer.get('name')))}\b",
                                                 message)]
    if named:
        return describe(min(named, key=lambda pair: pair[0])[1])
    quoted = re.search(r"'(\w+)'", message)
    return f"layer '{quoted.group(1)}'" if quoted else "the model"


def _one_filter(name: str, layers: Specs, *, first: bool) -> str:
    where = (" as the first layer (the first layer must be a Conv2D to read the image)"
             if first else "")
    return (f"{_who(name, layers)} has 1 filter on a 1-channel input, so quantizeml turns it "
            f"into a DepthwiseConv2D, which Akida 1.0 cannot run{where}. Fix: give it at least "
            "2 filters (filters=2 or more).")


def _who(name: str | None, layers: Specs) -> str:
    layer = by_name(layers, name) if name else None
    if layer is not None:
        return describe(layer)
    return f"layer '{name}'" if name else "a layer"


# ---------------------------------------------------------------------------------- mapping


def explain_mapping_error(message: str, layers: Specs) -> str:
    """The student-facing text for the mapper's refusal: the layer it could not map first."""
    try:
        return _explain_mapping(str(message), layers)
    except Exception:  # a malformed spec must never hide the mapper's own words
        return str(message)


def _explain_mapping(message: str, layers: Specs) -> str:
    header = HEADER.match(message)
    bullets = _bullets(message)
    if bullets:
        issues = sorted(bullets, key=lambda issue: SEQUENCE_END in issue[1])  # stable
        raw = _reordered(message, issues, header.group(1) if header else None)
    else:
        rest = message[header.end():] if header else message
        issues, raw = [(header.group(1) if header else None, rest)], message
    explanation = _plain(*issues[0], layers)
    if explanation is None:
        explanation = (f"the AKD1000's mapper could not place "
                       f"{_blamed(issues[0][0] or raw, layers)} on the chip. {PATTERN_FIX}")
    return f"{explanation} The mapper said:\n{raw}" if "\n" in raw else (
        f"{explanation} (the mapper said: {raw})")


def _bullets(message: str) -> list[Issue]:
    found: list[Issue] = []
    for line in message.splitlines():
        if match := BULLET.match(line):
            found.append((match.group(1), match.group(2)))
    return found


def _subject(issue: Issue) -> str | None:
    """The layer an issue is about (the pooled conv, for "must be followed by ...")."""
    match = POOL_FOLLOWED.search(issue[1])
    return match.group(1) if match else issue[0]


def _reordered(message: str, issues: list[Issue], header: str | None) -> str:
    """The mapper's lines, its complaint about the layer it could not map first."""
    lines = message.splitlines()
    head = [line for line in lines[:1] if HEADER.match(line)]
    others = [line for line in lines[len(head):] if line.strip() and not BULLET.match(line)]
    bullets = [f"  * Layer '{name}': {words}" for name, words in issues]
    if header is not None and _subject(issues[0]) != header:
        return "\n".join([*bullets, *others, *(line.rstrip(":") for line in head)])
    return "\n".join([*head, *bullets, *others])


def _plain(name: str | None, words: str, layers: Specs) -> str | None:
    if FILTER_SIZE in words:
        return _filter_size(name, layers)
    if match := COMPONENTS.search(words):
        needed, left = int(match.group(2)), int(match.group(3))
        return _not_enough_nps(_who(name, layers), match.group(1), needed, left)
    if match := POOL_FOLLOWED.search(words):
        return _pool_followed(match.group(1), name, layers)
    return None


def _filter_size(name: str | None, layers: Specs) -> str:
    layer = by_name(layers, name) if name else None
    layer = layer or _widest_conv(layers)
    who = describe(layer) if layer else (f"layer '{name}'" if name else "a convolution")
    kernel = pair(cfg(layer).get("kernel_size")) if layer else None
    channels = input_channels(layer) if layer else None
    if kernel and kernel[0] in CNP_MAX_INPUT_CHANNELS[4] and channels is not None:
        k = kernel[0]
        limits = (f"it reads {channels} input channels with a {k}x{k} kernel, but for that "
                  "kernel one Akida 1.0 convolution NP (CNP) holds the weights of at most "
                  f"{CNP_MAX_INPUT_CHANNELS[4][k]} input channels at 4-bit weights and "
                  f"{CNP_MAX_INPUT_CHANNELS[2][k]} at 2-bit weights")
    else:
        limits = ("one Akida 1.0 convolution NP (CNP) holds the weights of a Conv2D with at "
                  f"most {_limits(4)} at 4-bit weights, {_limits(2)} at 2-bit weights")
    return (f"{who} does not fit in one NP: {limits}. Fix: use fewer input channels (fewer "
            "filters in the convolution before it), fewer weight bits, or a SeparableConv2D "
            f"(kernel 3, 5 or 7; it maps with up to {SEPARABLE_INPUT_CHANNELS_MAPPED} input "
            "channels).")


def _limits(bits: int) -> str:
    """E.g. "448 input channels with a 1x1, 3x3 or 5x5 kernel and 149 with a 7x7 kernel"."""
    by_limit: dict[int, list[str]] = {}
    for kernel, limit in CNP_MAX_INPUT_CHANNELS[bits].items():
        by_limit.setdefault(limit, []).append(f"{kernel}x{kernel}")
    parts = [f"{limit} input channels with a {_either(kernels)} kernel"
             for limit, kernels in by_limit.items()]
    return " and ".join(parts)


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _widest_conv(layers: Specs) -> Layer | None:
    """The Conv2D furthest over its 4-bit channel cap: the likeliest one the mapper means."""
    def excess(layer: Layer) -> float:
        kernel = pair(cfg(layer).get("kernel_size")) or (0,)
        cap = CNP_MAX_INPUT_CHANNELS[4].get(kernel[0])
        return (input_channels(layer) or 0) / cap if cap else 0.0
    convs = [layer for layer in layers if cls(layer) == "Conv2D"]
    return max(convs, key=excess, default=None)


def _not_enough_nps(who: str, kind: str, needed: int, left: int) -> str:
    fix = ("Fix: use fewer or smaller layers: fewer filters or fewer convolutions, or shrink "
           "the feature maps earlier (MaxPooling2D or strides=2), since the NPs a layer needs "
           "grow with its filters, input channels and feature-map size.")
    if kind != "CNP1" or left > MAPPER_CNP1_NPS:
        return (f"{who} needs {needed} NPs of type {kind}, but only {left} were left after the "
                f"layers before it: the model needs more NPs than the AKD1000 has. {fix}")
    taken = MAPPER_CNP1_NPS - left
    return (f"{who} needs {needed} NPs, but the layers before it already took {taken} of the "
            f"{MAPPER_CNP1_NPS} NPs the mapper can give to convolutions (the AKD1000 has "
            f"{AKD1000_NPS} NPs in all; the first Conv2D runs on the separate input unit), so "
            f"only {left} were left: the model needs at least {taken + needed} NPs, more than "
            f"the chip has. {fix}")


def _pool_followed(pooled: str, follower: str | None, layers: Specs) -> str:
    after = f" (after it comes {_who(follower, layers)})" if follower else ""
    return (f"{_who(pooled, layers)} has max pooling but no convolution after it{after}: on "
            "Akida 1.0 a convolution with max pooling must be followed by another Conv2D or "
            "SeparableConv2D. Fix: add a keras.layers.Conv2D(..., padding='same') + "
            "keras.layers.ReLU(max_value=...) after it, or remove the pooling.")
