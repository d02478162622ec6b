"""The pure design rules, on hand-built layer specs (no TensorFlow needed)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from pytest_akida_grade import assignment
from pytest_akida_grade.results import Violation
from pytest_akida_grade.rules import akida_v1, design_space, specs

# ------------------------------------------------------------------------------- spec builders

KERAS_NAMES = {"Conv2D": "conv2d", "SeparableConv2D": "separable_conv2d",
               "MaxPooling2D": "max_pooling2d", "ReLU": "re_lu", "Dense": "dense",
               "BatchNormalization": "batch_normalization", "Flatten": "flatten",
               "Rescaling": "rescaling", "Dropout": "dropout", "InputLayer": "input_1",
               "AveragePooling2D": "average_pooling2d", "Activation": "activation"}


def conv(filters: int = 16, kernel: int | list[int] = 3, strides: int = 1,
         padding: str = "same", cls: str = "Conv2D", **extra: Any) -> tuple[str, dict]:
    size = [kernel, kernel] if isinstance(kernel, int) else kernel
    config = {"filters": filters, "kernel_size": size, "strides": [strides, strides],
              "padding": padding, "dilation_rate": [1, 1], "activation": "linear",
              "use_bias": True, **({"groups": 1} if cls == "Conv2D" else {"depth_multiplier": 1})}
    return cls, {**config, **extra}


def sep(filters: int = 16, kernel: int = 3, **extra: Any) -> tuple[str, dict]:
    return conv(filters, kernel, cls="SeparableConv2D", **extra)


def relu(max_value: Any = 3.0, **extra: Any) -> tuple[str, dict]:
    return "ReLU", {"max_value": max_value, "negative_slope": 0.0, "threshold": 0.0, **extra}


def pool(size: int | list[int] = 2, strides: int | list[int] | None = None,
         padding: str = "same") -> tuple[str, dict]:
    pair = [size, size] if isinstance(size, int) else size
    stride_pair = [strides, strides] if isinstance(strides, int) else strides
    return "MaxPooling2D", {"pool_size": pair, "strides": stride_pair or pair, "padding": padding}


def bn() -> tuple[str, dict]:
    return "BatchNormalization", {"axis": [3]}


def rescaling() -> tuple[str, dict]:
    return "Rescaling", {"scale": 1 / 255, "offset": 0.0}


def flatten() -> tuple[str, dict]:
    return "Flatten", {}


def dense(units: int = 10, activation: str = "linear") -> tuple[str, dict]:
    return "Dense", {"units": units, "activation": activation}


def other(cls: str, **config: Any) -> tuple[str, dict]:
    return cls, config


def model(*layers: tuple[str, dict], input_shape: tuple[int, ...] = (28, 28, 1)) -> list[dict]:
    """Layer specs as pipeline.layer_specs() returns them, with Keras names and shapes."""
    counts: Counter[str] = Counter()
    shape: list[int] = list(input_shape)
    specs = []
    for index, (cls, config) in enumerate(layers):
        base = KERAS_NAMES.get(cls, cls.lower())
        name = base if counts[cls] == 0 else f"{base}_{counts[cls]}"
        counts[cls] += 1
        out = _output_shape(cls, config, shape)
        specs.append({"index": index, "name": name, "class_name": cls,
                      "config": {"name": name, **config},
                      "input_shape": shape, "output_shape": out})
        shape = out
    return specs


def _output_shape(cls: str, config: dict, shape: list[int]) -> list[int]:
    if cls in ("Conv2D", "SeparableConv2D"):
        spatial = _slide(shape[:2], config["kernel_size"], config["strides"], config["padding"])
        return [*spatial, config["filters"]]
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        spatial = _slide(shape[:2], config["pool_size"], config["strides"], config["padding"])
        return [*spatial, shape[2]]
    if cls == "Flatten":
        return [math.prod(shape)]
    if cls == "Dense":
        return [*shape[:-1], config["units"]]
    return list(shape)


def _slide(spatial: list[int], window: list[int], strides: list[int], padding: str) -> list[int]:
    if padding == "same":
        return [math.ceil(n / s) for n, s in zip(spatial, strides, strict=True)]
    return [(n - w) // s + 1 for n, w, s in zip(spatial, window, strides, strict=True)]


def template(*extra_before_flatten: tuple[str, dict]) -> list[dict]:
    """The assignment's model_keras, optionally with more layers before the classifier."""
    return model(rescaling(),
                 conv(), relu(), pool(),
                 conv(), relu(), pool(),
                 *extra_before_flatten,
                 flatten(), dense())


FIXED_TEMPLATE = (conv(32), relu())


def only(found: list[Violation], rule: str | None = None) -> Violation:
    assert len(found) == 1, found
    if rule is not None:
        assert found[0].rule == rule
    return found[0]


def assert_names_layer(violation: Violation, index: int, name: str) -> None:
    assert violation.layer_index == index
    assert violation.layer_name == name
    assert f"layer {index} '{name}'" in violation.message


# ---------------------------------------------------------------------------------- describe


def test_it_describes_a_layer_by_index_name_and_class() -> None:
    spec = template()[6]
    assert specs.describe(spec) == "layer 6 'max_pooling2d_1' (MaxPooling2D)"


# ----------------------------------------------------------------------- the assignment model


def test_the_assignment_template_passes_the_whitelist_and_relu_checks() -> None:
    assert design_space.layer_whitelist(template()) == []
    assert design_space.relu_bounded(template()) == []


def test_the_assignment_template_fails_on_pooling_right_before_the_classifier() -> None:
    violation = only(akida_v1.v1_static(template()), "v1.pool_before_classifier")
    assert_names_layer(violation, 6, "max_pooling2d_1")
    assert "must be followed by another Conv2D or SeparableConv2D" in violation.message
    assert "add" in violation.message and "remove this pooling" in violation.message


def test_the_template_with_a_third_convolution_passes_every_rule() -> None:
    specs = template(*FIXED_TEMPLATE)
    assert design_space.layer_whitelist(specs) == []
    assert design_space.relu_bounded(specs) == []
    assert akida_v1.v1_static(specs) == []
    assert design_space.quantization_scheme(4, 4) == []


def test_a_single_pooled_input_convolution_may_feed_the_classifier() -> None:
    # The AKD1000 mapper accepts InputConvolutional + pooling -> FullyConnected.
    assert akida_v1.v1_static(model(rescaling(), conv(), relu(), pool(), flatten(), dense())) == []


# ---------------------------------------------------------------------------- layer whitelist


def test_it_fails_a_dropout_layer_and_says_to_remove_it() -> None:
    specs = template(other("Dropout", rate=0.2), *FIXED_TEMPLATE)
    violation = only(design_space.layer_whitelist(specs), design_space.CHECK_LAYER_WHITELIST)
    assert_names_layer(violation, 7, "dropout")
    assert "Allowed layers are Conv2D" in violation.message
    assert "remove it" in violation.message


def test_it_fails_average_pooling_and_suggests_max_pooling() -> None:
    specs = model(rescaling(), conv(), relu(), other("AveragePooling2D", pool_size=[2, 2],
                                                     strides=[2, 2], padding="same"),
                  conv(), relu(), flatten(), dense())
    violation = only(design_space.layer_whitelist(specs))
    assert_names_layer(violation, 3, "average_pooling2d")
    assert "use MaxPooling2D" in violation.message


def test_it_fails_a_hidden_dense_layer() -> None:
    specs = model(rescaling(), conv(), relu(), flatten(), dense(64), dense())
    hidden = next(v for v in design_space.layer_whitelist(specs) if v.layer_index == 4)
    assert hidden.layer_name == "dense"
    assert "hidden Dense" in hidden.message and "remove it" in hidden.message


def test_it_fails_a_final_dense_that_does_not_follow_flatten() -> None:
    specs = model(rescaling(), conv(), relu(), conv(), relu(), dense())
    violation = only(design_space.layer_whitelist(specs))
    assert_names_layer(violation, 5, "dense")
    assert "Flatten" in violation.message


def test_it_fails_a_classifier_without_ten_units() -> None:
    violation = only(design_space.layer_whitelist(model(conv(), relu(), flatten(), dense(12))))
    assert "10 units" in violation.message and "12" in violation.message


def test_it_fails_a_model_without_the_final_classifier() -> None:
    violation = only(design_space.layer_whitelist(model(rescaling(), conv(), relu())))
    assert violation.layer_index is None
    assert "Flatten() followed by keras.layers.Dense(10)" in violation.message


def test_it_fails_a_rescaling_that_is_not_the_first_layer() -> None:
    specs = model(conv(), relu(), rescaling(), flatten(), dense())
    violation = only(design_space.layer_whitelist(specs))
    assert_names_layer(violation, 2, "rescaling")
    assert "first layer" in violation.message


def test_it_fails_an_activation_layer_and_suggests_a_bounded_relu() -> None:
    specs = model(conv(), other("Activation", activation="relu"), flatten(), dense())
    violation = only(design_space.layer_whitelist(specs))
    assert "ReLU(max_value=6.0)" in violation.message


def test_it_accepts_a_leading_input_layer() -> None:
    specs = model(other("InputLayer", batch_input_shape=[None, 28, 28, 1]),
                  conv(), relu(), flatten(), dense())
    assert design_space.layer_whitelist(specs) == []


# ------------------------------------------------------------------------------- bounded ReLU


@pytest.mark.parametrize("cap", [None, math.inf, math.nan, 0.0, "6", True])
def test_it_fails_an_unbounded_relu(cap: object) -> None:
    specs = model(conv(), relu(cap), flatten(), dense())
    violation = only(design_space.relu_bounded(specs), design_space.CHECK_RELU_BOUNDED)
    assert_names_layer(violation, 1, "re_lu")
    assert "ReLU(max_value=6.0)" in violation.message


def test_it_fails_a_leaky_or_thresholded_relu() -> None:
    specs = model(conv(), relu(6.0, negative_slope=0.1), flatten(), dense())
    violation = only(design_space.relu_bounded(specs))
    assert "negative_slope=0.1" in violation.message and "plain clipped ReLU" in violation.message


def test_it_fails_an_activation_hidden_inside_a_convolution() -> None:
    specs = model(conv(activation="relu"), flatten(), dense())
    violation = only(design_space.relu_bounded(specs))
    assert_names_layer(violation, 0, "conv2d")
    assert "remove activation='relu'" in violation.message
    assert "ReLU(max_value=6.0) after it" in violation.message


def test_it_fails_a_softmax_on_the_classifier() -> None:
    specs = model(conv(), relu(), flatten(), dense(activation="softmax"))
    violation = only(design_space.relu_bounded(specs))
    assert_names_layer(violation, 3, "dense")
    assert "remove activation='softmax'" in violation.message and "argmax" in violation.message


def test_it_accepts_bounded_plain_relus() -> None:
    specs = model(conv(), relu(6), sep(), relu(1.5), flatten(), dense())
    assert design_space.relu_bounded(specs) == []


# ------------------------------------------------------------------------ quantization scheme


@pytest.mark.parametrize(("weight_bits", "activation_bits"), assignment.SUPPORTED_SCHEMES)
def test_it_accepts_the_three_supported_schemes(weight_bits: int, activation_bits: int) -> None:
    assert design_space.quantization_scheme(weight_bits, activation_bits) == []


def test_it_fails_an_unsupported_scheme_and_lists_the_supported_ones() -> None:
    violation = only(design_space.quantization_scheme(8, 8), design_space.CHECK_QUANTIZATION_SCHEME)
    assert "W8A8" in violation.message
    assert "W4A4, W4A1, W2A4" in violation.message


@pytest.mark.parametrize("bits", [True, 4.0, "4", None])
def test_it_fails_bit_widths_that_are_not_ints(bits: object) -> None:
    violation = only(design_space.quantization_scheme(bits, 4))
    assert "WEIGHT_BITS must be a whole number" in violation.message
    assert repr(bits) in violation.message


# -------------------------------------------------------------------- Akida 1.0: input layer


def test_it_fails_a_separable_convolution_as_first_layer() -> None:
    specs = model(rescaling(), sep(), relu(), conv(), relu(), flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.input_conv")
    assert_names_layer(violation, 1, "separable_conv2d")
    assert "InputConvolutional" in violation.message and "put a keras.layers.Conv2D" in \
        violation.message


@pytest.mark.parametrize(("change", "words"), [
    ({"kernel": 1}, "3x3, 5x5 or 7x7"),
    ({"kernel": [3, 5]}, "3x3, 5x5 or 7x7"),
    ({"strides": 4}, "1, 2 or 3"),
    ({"filters": 193, "kernel": 5, "strides": 2}, "at most 192"),
])
def test_it_fails_an_input_convolution_the_chip_cannot_run(change: dict, words: str) -> None:
    specs = model(rescaling(), conv(**change), relu(), flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.input_conv")
    assert_names_layer(violation, 1, "conv2d")
    assert words in violation.message


def test_it_accepts_an_input_convolution_at_the_limits() -> None:
    specs = model(rescaling(), conv(96, kernel=7, strides=3, padding="valid"), relu(),
                  pool([1, 2], padding="valid"), conv(), relu(), flatten(), dense())
    assert akida_v1.v1_static(specs) == []


def test_it_fails_an_input_that_is_not_a_one_channel_image() -> None:
    specs = model(conv(), relu(), flatten(), dense(), input_shape=(28, 28, 3))
    violation = only(akida_v1.v1_static(specs), "v1.input_conv")
    assert "3 channels" in violation.message and "input_shape=(28, 28, 1)" in violation.message


def test_it_fails_an_input_wider_than_the_chip_reads() -> None:
    specs = model(conv(), relu(), pool(), conv(), relu(), flatten(), dense(),
                  input_shape=(28, 300, 1))
    violation = only(akida_v1.v1_static(specs), "v1.input_conv")
    assert "28x300" in violation.message and "[5, 256]" in violation.message


def test_it_fails_an_input_pooling_with_a_stride_other_than_its_size() -> None:
    specs = model(conv(), relu(), pool(2, strides=1), conv(), relu(), flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.input_pool")
    assert_names_layer(violation, 2, "max_pooling2d")
    assert "stride equal to the pool size" in violation.message


# -------------------------------------------------------------------- Akida 1.0: later layers


@pytest.mark.parametrize(("change", "words"), [
    ({"padding": "valid"}, "only supports 'same' padding"),
    ({"kernel": 5, "strides": 2}, "stride 2 with 3x3 kernels"),
    ({"kernel": 9}, "1x1, 3x3, 5x5, 7x7"),
    ({"dilation_rate": [2, 2]}, "dilation_rate is 2x2"),
    ({"groups": 2}, "groups=1"),
])
def test_it_fails_a_later_convolution_the_chip_cannot_run(change: dict, words: str) -> None:
    specs = template(conv(32, **change), relu())
    violation = only(akida_v1.v1_static(specs), "v1.conv")
    assert_names_layer(violation, 7, "conv2d_2")
    assert words in violation.message


def test_it_accepts_a_strided_3x3_and_a_valid_1x1_convolution() -> None:
    specs = template(conv(32, strides=2), relu(), conv(32, kernel=1, padding="valid"), relu())
    assert akida_v1.v1_static(specs) == []


@pytest.mark.parametrize(("change", "words"), [
    ({"kernel": 1}, "3x3, 5x5, 7x7"),
    ({"kernel": 7, "strides": 2}, "stride 2 with 3x3 kernels"),
    ({"depth_multiplier": 2}, "depth_multiplier"),
])
def test_it_fails_a_separable_convolution_the_chip_cannot_run(change: dict, words: str) -> None:
    specs = template(sep(32, **change), relu())
    violation = only(akida_v1.v1_static(specs), "v1.separable_conv")
    assert_names_layer(violation, 7, "separable_conv2d")
    assert words in violation.message


def test_it_accepts_separable_convolutions_after_the_first_layer() -> None:
    specs = template(sep(32, kernel=5), relu(), sep(32, strides=2), relu())
    assert akida_v1.v1_static(specs) == []


@pytest.mark.parametrize("geometry", [{"size": 3}, {"size": [1, 2]}, {"size": 1, "strides": 2}])
def test_it_fails_a_later_pooling_the_chip_cannot_run(geometry: dict) -> None:
    specs = template(conv(), relu(), pool(**geometry), *FIXED_TEMPLATE)
    violation = only(akida_v1.v1_static(specs), "v1.pool_size")
    assert_names_layer(violation, 9, "max_pooling2d_2")
    assert "1x1 or 2x2" in violation.message


def test_it_accepts_an_overlapping_2x2_pooling_after_the_first_layer() -> None:
    specs = template(conv(), relu(), pool(2, strides=1), *FIXED_TEMPLATE)
    assert akida_v1.v1_static(specs) == []


def test_it_fails_a_pooling_whose_padding_differs_from_its_convolution() -> None:
    specs = template(conv(), relu(), pool(padding="valid"), *FIXED_TEMPLATE)
    violation = only(akida_v1.v1_static(specs), "v1.pool_padding")
    assert_names_layer(violation, 9, "max_pooling2d_2")
    assert "padding='same' on the MaxPooling2D" in violation.message


# ------------------------------------------------------------------ Akida 1.0: layer ordering


def test_it_fails_two_poolings_in_a_row() -> None:
    specs = model(rescaling(), conv(), relu(), pool(), pool(), *FIXED_TEMPLATE, flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.pool_after_conv")
    assert_names_layer(violation, 4, "max_pooling2d_1")
    assert "second pooling" in violation.message


def test_it_fails_a_pooling_right_after_rescaling() -> None:
    specs = model(rescaling(), pool(), *FIXED_TEMPLATE, flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.pool_after_conv")
    assert_names_layer(violation, 1, "max_pooling2d")
    assert "does not follow a convolution" in violation.message


def test_it_fails_a_separable_convolution_pooled_right_before_the_classifier() -> None:
    specs = template(sep(32), relu(), pool())
    violation = only(akida_v1.v1_static(specs), "v1.pool_before_classifier")
    assert_names_layer(violation, 9, "max_pooling2d_2")


@pytest.mark.parametrize("block", [
    (conv(), bn(), relu(), pool()),
    (conv(), pool(), bn(), relu()),
    (conv(), bn(), pool(), relu()),
])
def test_it_accepts_a_batch_norm_between_convolution_and_relu(block: tuple) -> None:
    assert akida_v1.v1_static(model(rescaling(), *block, *FIXED_TEMPLATE, flatten(), dense())) == []


@pytest.mark.parametrize(("block", "bn_index", "blocker"), [
    ((conv(), relu(), bn()), 3, "re_lu"),
    ((conv(), relu(), pool(), bn()), 4, "re_lu"),
    ((conv(), bn(), bn(), relu()), 3, "batch_normalization"),
])
def test_it_fails_a_batch_norm_that_cannot_be_folded(block: tuple, bn_index: int,
                                                     blocker: str) -> None:
    specs = model(rescaling(), *block, *FIXED_TEMPLATE, flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.batchnorm_position")
    assert violation.layer_index == bn_index
    assert f"comes after layer 2 '{blocker}'" in violation.message
    assert "between the convolution (or its MaxPooling2D) and the ReLU" in violation.message


def test_it_fails_a_batch_norm_that_follows_no_convolution() -> None:
    specs = model(rescaling(), bn(), *FIXED_TEMPLATE, flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.batchnorm_position")
    assert_names_layer(violation, 1, "batch_normalization")


def test_it_fails_a_convolution_without_a_relu() -> None:
    specs = model(rescaling(), conv(), pool(), conv(32), relu(), flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.relu_after_conv")
    assert_names_layer(violation, 1, "conv2d")
    assert "no ReLU after it" in violation.message


def test_it_fails_two_relus_after_one_convolution() -> None:
    specs = model(rescaling(), conv(), relu(), relu(), *FIXED_TEMPLATE, flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.relu_after_conv")
    assert_names_layer(violation, 3, "re_lu_1")


def test_it_fails_a_classifier_with_too_many_inputs() -> None:
    specs = model(rescaling(), conv(80), relu(), flatten(), dense())  # 28*28*80 = 62720
    violation = only(akida_v1.v1_static(specs), "v1.dense_input_size")
    assert_names_layer(violation, 3, "flatten")
    assert "62720" in violation.message and "57334" in violation.message


def test_it_reports_every_v1_violation_in_layer_order() -> None:
    specs = model(rescaling(), conv(kernel=1), relu(), pool(), pool(), conv(padding="valid"),
                  relu(), pool(), flatten(), dense())
    found = akida_v1.v1_static(specs)
    assert [v.layer_index for v in found] == sorted(v.layer_index for v in found)
    assert {v.rule for v in found} == {"v1.input_conv", "v1.pool_after_conv", "v1.conv",
                                       "v1.pool_padding", "v1.pool_before_classifier"}


def test_it_does_not_crash_on_unknown_or_malformed_layers() -> None:
    specs = model(rescaling(), other("MyCustomLayer"), conv(kernel="odd"), relu(None),
                  other("Reshape", target_shape=[784]), flatten(), dense())
    assert akida_v1.v1_static(specs)[0].rule == "v1.input_conv"
    assert akida_v1.v1_static([]) != []


def test_every_documented_rule_says_it_is_documented() -> None:
    found = akida_v1.v1_static(template(sep(32, kernel=1), relu()))
    assert found and all(v.documented for v in found)
    assert akida_v1.v1_static(template()) == akida_v1.v1_static(template(), weight_bits=4)


# ---------------------------------------------- Akida 1.0: limits found by mapping (issue 13)


def assert_found_by_mapping(violation: Violation) -> None:
    assert violation.documented is False
    assert "found by mapping, not in BrainChip's constraints page" in violation.message


def test_it_fails_a_one_filter_convolution_on_a_one_channel_input() -> None:
    specs = model(rescaling(), conv(1), relu(), conv(16, strides=2), relu(), flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.one_filter_conv")
    assert_names_layer(violation, 1, "conv2d")
    assert_found_by_mapping(violation)
    assert "DepthwiseConv2D" in violation.message and "at least 2 filters" in violation.message
    assert "the first layer must stay a Conv2D" in violation.message


def test_it_fails_a_one_filter_convolution_after_a_one_channel_layer() -> None:
    specs = model(rescaling(), conv(2), relu(), conv(1), relu(), conv(1, kernel=1), relu(),
                  flatten(), dense())
    violation = only(akida_v1.v1_static(specs), "v1.one_filter_conv")
    assert_names_layer(violation, 5, "conv2d_2")
    assert "first layer" not in violation.message


def test_a_one_filter_1x1_input_convolution_fails_the_kernel_rule_and_the_filter_rule() -> None:
    specs = model(rescaling(), conv(1, kernel=1), relu(), conv(16), relu(), flatten(), dense())
    found = akida_v1.v1_static(specs)
    assert [v.rule for v in found] == ["v1.input_conv", "v1.one_filter_conv"]
    assert "its kernel is 1x1" in found[0].message and found[0].documented
    assert "at least 2 filters" in found[1].message


def test_it_accepts_one_filter_on_two_channels_and_two_filters_on_one() -> None:
    specs = model(rescaling(), conv(2), relu(), conv(1), relu(), conv(2), relu(), flatten(),
                  dense())
    assert akida_v1.v1_static(specs) == []


def test_a_one_filter_separable_convolution_on_one_channel_is_not_rewritten() -> None:
    specs = model(rescaling(), conv(2), relu(), conv(1), relu(), sep(1), relu(), flatten(),
                  dense())
    assert akida_v1.v1_static(specs) == []


def wide(channels: int, kernel: int, cls: str = "Conv2D") -> list[dict]:
    """A convolution reading `channels` inputs (from a 1x1 convolution) on a small map."""
    return model(rescaling(), conv(16, strides=3), relu(), conv(channels, kernel=1), relu(),
                 conv(16, kernel=kernel, cls=cls), relu(), flatten(), dense())


CNP_CAPS = [(bits, kernel, cap) for bits, caps in specs.CNP_MAX_INPUT_CHANNELS.items()
            for kernel, cap in caps.items()]


@pytest.mark.parametrize(("bits", "kernel", "cap"), CNP_CAPS,
                         ids=[f"W{b}-{k}x{k}-cap-{c}" for b, k, c in CNP_CAPS])
def test_it_fails_a_convolution_with_more_input_channels_than_a_cnp_holds(
        bits: int, kernel: int, cap: int) -> None:
    assert akida_v1.v1_static(wide(cap, kernel), weight_bits=bits) == []
    violation = only(akida_v1.v1_static(wide(cap + 1, kernel), weight_bits=bits),
                     "v1.cnp_input_channels")
    assert_names_layer(violation, 5, "conv2d_2")
    assert_found_by_mapping(violation)
    assert f"reads {cap + 1} input channels with a {kernel}x{kernel} kernel" in violation.message
    assert f"at {bits}-bit weights" in violation.message and f"at most {cap}" in violation.message


def test_the_cnp_channel_limit_depends_on_the_weight_bits() -> None:
    specs = wide(512, 3)
    violation = only(akida_v1.v1_static(specs, weight_bits=4), "v1.cnp_input_channels")
    assert "2-bit weights (W2A4 allows 896 here)" in violation.message
    assert "SeparableConv2D" in violation.message
    assert akida_v1.v1_static(specs, weight_bits=2) == []


def test_it_does_not_suggest_fixes_that_would_not_map() -> None:
    message = only(akida_v1.v1_static(wide(900, 7), weight_bits=4)).message
    assert "2-bit" not in message and "SeparableConv2D" not in message
    assert "at most 149 input channels" in message


def test_a_separable_convolution_is_exempt_from_the_cnp_channel_limit() -> None:
    assert akida_v1.v1_static(wide(512, 7, cls="SeparableConv2D"), weight_bits=4) == []


@pytest.mark.parametrize("bits", [1, 3, 8, "4", None])
def test_it_reports_no_channel_limit_at_weight_bits_nobody_measured(bits: Any) -> None:
    assert akida_v1.v1_static(wide(2048, 3), weight_bits=bits) == []


def test_the_channel_limit_does_not_apply_to_the_input_convolution() -> None:
    specs = model(conv(16), relu(), flatten(), dense(), input_shape=(28, 28, 600))
    assert {v.rule for v in akida_v1.v1_static(specs)} == {"v1.input_conv"}


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu"])
def test_it_fails_an_unbounded_relu_written_as_an_activation_layer(activation: str) -> None:
    specs = model(conv(), other("Activation", activation=activation), flatten(), dense())
    violation = only(design_space.relu_bounded(specs))
    assert_names_layer(violation, 1, "activation")
    assert "no upper bound" in violation.message and "ReLU(max_value=6.0)" in violation.message


def test_it_fails_a_leaky_relu_layer_as_unbounded() -> None:
    specs = model(conv(), other("LeakyReLU", alpha=0.3), flatten(), dense())
    assert "no upper bound (LeakyReLU)" in only(design_space.relu_bounded(specs)).message


def test_it_leaves_a_relu6_activation_layer_to_the_whitelist() -> None:
    specs = model(conv(), other("Activation", activation="relu6"), flatten(), dense())
    assert design_space.relu_bounded(specs) == []
    assert "ReLU(max_value=6.0)" in only(design_space.layer_whitelist(specs)).message
