"""Plain words for the toolchain's refusals, on raw messages captured from the real tools.

Captured with akida 2.19.3, cnn2snn 2.19.3 and quantizeml 1.2.5 (W4A4) from the models the
`model(...)` specs below describe, built in a fresh Keras session (so the names match).
"""

from __future__ import annotations

from typing import Any

import pytest
from test_rules import conv, dense, flatten, model, pool, relu, rescaling

from pytest_akida_grade.rules import mapper
from pytest_akida_grade.rules.specs import Specs

FIRST_ONE_FILTER = (
    "ValueError: Impossible to quantize inputs: unsigned quantization (input_dtype = uint8) is "
    "only possible if first layer (conv2d) was one of (<class 'tf_keras.src.layers.convolutional"
    ".conv2d.Conv2D'>, <class 'quantizeml.layers.buffer_temp_conv.BufferTempConv'>, <class "
    "'tf_keras.src.layers.core.dense.Dense'>, <class 'quantizeml.layers.stateful_recurrent."
    "StatefulProjection'>).")
MID_ONE_FILTER = (
    "RuntimeError: Invalid block found during conversion:\n QuantizedDepthwiseConv2D (conv2d_2)"
    "\nQuantizedReLU (re_lu_2)\nCompatible patterns that contain the faulty layers are:\n"
    " - QuantizedDense > QuantizedReLU\n - QuantizedFlatten > QuantizedDense > QuantizedReLU\n"
    " - QuantizedReshape > QuantizedDense > QuantizedReLU\n"
    " - QuantizedReshape > QuantizedFlatten > QuantizedDense > QuantizedReLU\n"
    " - QuantizedConv2D > QuantizedReLU\n - QuantizedConv2D > QuantizedMaxPool2D > QuantizedReLU\n"
    " - QuantizedConv2D > QuantizedGlobalAveragePooling2D > QuantizedReLU\n"
    " - QuantizedSeparableConv2D > QuantizedReLU\n"
    " - QuantizedSeparableConv2D > QuantizedGlobalAveragePooling2D > QuantizedReLU\n"
    " - QuantizedSeparableConv2D > QuantizedMaxPool2D > QuantizedReLU")
TOO_WIDE = ("Cannot map layer 'conv2d_2'. Filter size is too big to fit in a CNP: try decreasing "
            "the input channels or the bitwidth.")
SEQUENCE_END = ("A convolutional or separable convolutional layer with max pooling cannot be the "
                "last layer of a sequence.")
WIDE_AFTER_POOL = (
    "Cannot map layer 'conv2d_1':\n"
    f"  * Layer 'conv2d_1': {SEQUENCE_END}\n"
    "  * Layer 'conv2d_2': Filter size is too big to fit in a CNP: try decreasing the input "
    "channels or the bitwidth.")
TEMPLATE = (
    "Cannot map layer 'conv2d_1':\n"
    f"  * Layer 'conv2d_1': {SEQUENCE_END}\n"
    "  * Layer 'dense': A convolutional or separable convolutional layer with max pooling must "
    "be followed by another convolutional or separable convolutional layer. Layer 'conv2d_1' "
    "has max pooling.")
TOO_MANY_NPS = ("Cannot map layer 'conv2d_3'. Not enough hardware components of type CNP1 "
                "available. 48 are needed but 29 are available.")


def first_one_filter() -> Specs:
    return model(rescaling(), conv(1), relu(), conv(16), relu(), flatten(), dense())


def mid_one_filter() -> Specs:
    return model(rescaling(), conv(2), relu(), conv(1), relu(), conv(1), relu(), flatten(),
                 dense())


def too_wide() -> Specs:
    return model(rescaling(), conv(16), relu(), conv(512), relu(), conv(512), relu(), pool(),
                 conv(64, strides=2), relu(), flatten(), dense())


def wide_after_pool() -> Specs:
    return model(rescaling(), conv(16), relu(), pool(), conv(512), relu(), pool(), conv(64),
                 relu(), flatten(), dense())


def three_256() -> Specs:
    return model(rescaling(), conv(16), relu(), conv(256), relu(), conv(256), relu(), conv(256),
                 relu(), conv(4), relu(), flatten(), dense())


# ------------------------------------------------------------------------------ conversion


def test_it_explains_a_one_filter_first_layer_and_keeps_quantizeml_words() -> None:
    text = mapper.explain_conversion_error(FIRST_ONE_FILTER, first_one_filter())
    assert text.startswith("layer 1 'conv2d' (Conv2D) has 1 filter on a 1-channel input")
    assert "DepthwiseConv2D" in text and "Fix: give it at least 2 filters" in text
    assert text.endswith(f"(quantizeml said: {FIRST_ONE_FILTER})")


def test_it_explains_a_one_filter_convolution_mid_network_and_keeps_cnn2snn_words() -> None:
    text = mapper.explain_conversion_error(MID_ONE_FILTER, mid_one_filter())
    assert text.startswith("layer 5 'conv2d_2' (Conv2D) has 1 filter on a 1-channel input")
    assert "first layer" not in text.split("(cnn2snn said")[0]
    assert text.endswith(f"(cnn2snn said: {MID_ONE_FILTER})")


def test_it_tells_a_model_that_starts_with_a_separable_convolution_to_start_with_conv2d() -> None:
    message = FIRST_ONE_FILTER.replace("(conv2d)", "(separable_conv2d)")
    layers = model(rescaling(), conv(8, cls="SeparableConv2D"), relu(), flatten(), dense())
    text = mapper.explain_conversion_error(message, layers)
    assert text.startswith("layer 1 'separable_conv2d' (SeparableConv2D) is the first")
    assert "keras.layers.Conv2D" in text and message in text


def test_it_names_the_layer_even_when_the_specs_do_not_have_it() -> None:
    text = mapper.explain_conversion_error(MID_ONE_FILTER, [])
    assert text.startswith("layer 'conv2d_2' has 1 filter")


def test_it_leads_an_unknown_conversion_message_with_the_layer_and_the_fix() -> None:
    message = "ValueError: Layers 're_lu_2': in AkidaVersion.v1, output_quantizer is mandatory."
    text = mapper.explain_conversion_error(message, first_one_filter())
    assert text.startswith("layer 're_lu_2' cannot be converted for Akida 1.0")
    assert "Fix: keep to the template's pattern" in text
    assert text.endswith(f"(the Akida tools said: {message})")


def test_it_names_the_layer_of_a_conversion_message_from_the_specs() -> None:
    message = ("RuntimeError: Model incompatible with akida v1 version. The layer conv2d_2 "
               "followed by flatten is not valid.")
    text = mapper.explain_conversion_error(message, too_wide())
    assert text.startswith("layer 5 'conv2d_2' (Conv2D) cannot be converted for Akida 1.0")


# ---------------------------------------------------------------------------------- mapping


def test_it_explains_a_filter_too_big_for_a_cnp_naming_the_layer_and_the_fixes() -> None:
    text = mapper.explain_mapping_error(TOO_WIDE, too_wide())
    assert text.startswith("layer 5 'conv2d_2' (Conv2D) does not fit in one NP: it reads 512 "
                           "input channels with a 3x3 kernel")
    assert "at most 448 input channels at 4-bit weights and 896 at 2-bit weights" in text
    assert "fewer input channels" in text and "fewer weight bits" in text
    assert "SeparableConv2D" in text
    assert text.endswith(f"(the mapper said: {TOO_WIDE})")


def test_it_leads_with_the_layer_it_could_not_map_not_the_pooling_before_it() -> None:
    text = mapper.explain_mapping_error(WIDE_AFTER_POOL, wide_after_pool())
    assert text.startswith("layer 7 'conv2d_2' (Conv2D) does not fit in one NP")
    words = text.split("The mapper said:\n")[1].splitlines()
    assert words[0] == ("  * Layer 'conv2d_2': Filter size is too big to fit in a CNP: try "
                        "decreasing the input channels or the bitwidth.")
    assert words[1] == f"  * Layer 'conv2d_1': {SEQUENCE_END}"
    assert words[2] == "Cannot map layer 'conv2d_1'"  # the mapper's header, kept, last


def test_it_finds_the_layer_from_the_specs_when_the_message_names_none() -> None:
    message = "Filter size is too big to fit in a CNP: try decreasing the input channels."
    text = mapper.explain_mapping_error(message, wide_after_pool())
    assert text.startswith("layer 7 'conv2d_2' (Conv2D) does not fit in one NP")
    assert text.endswith(f"(the mapper said: {message})")


def test_it_states_every_cap_when_it_cannot_tell_the_kernel() -> None:
    text = mapper.explain_mapping_error(TOO_WIDE, [])
    assert text.startswith("layer 'conv2d_2' does not fit in one NP")
    assert ("448 input channels with a 1x1, 3x3 or 5x5 kernel and 149 input channels with a "
            "7x7 kernel at 4-bit weights") in text


def test_it_explains_running_out_of_nps_with_the_counts_against_the_chip() -> None:
    text = mapper.explain_mapping_error(TOO_MANY_NPS, three_256())
    assert text.startswith("layer 7 'conv2d_3' (Conv2D) needs 48 NPs, but the layers before it "
                           "already took 49 of the 78 NPs")
    assert "the AKD1000 has 80 NPs in all" in text and "only 29 were left" in text
    assert "needs at least 97 NPs" in text and "Fix: use fewer or smaller layers" in text
    assert text.endswith(f"(the mapper said: {TOO_MANY_NPS})")


def test_it_explains_running_out_of_other_np_types_without_the_convolution_count() -> None:
    message = TOO_MANY_NPS.replace("CNP1", "FNP3")
    text = mapper.explain_mapping_error(message, three_256())
    assert "needs 48 NPs of type FNP3, but only 29 were left" in text and "78" not in text


def test_it_explains_the_template_pooling_and_keeps_the_words_students_search_for() -> None:
    layers = model(rescaling(), conv(), relu(), pool(), conv(), relu(), pool(), flatten(), dense())
    text = mapper.explain_mapping_error(TEMPLATE, layers)
    assert text.startswith("layer 4 'conv2d_1' (Conv2D) has max pooling but no convolution after "
                           "it (after it comes layer 8 'dense' (Dense))")
    words = text.split("The mapper said:\n")[1].splitlines()
    assert words[0] == "Cannot map layer 'conv2d_1':"  # the header names the pooled layer
    assert "must be followed by another convolutional" in words[1]
    assert words[2] == f"  * Layer 'conv2d_1': {SEQUENCE_END}"


def test_it_never_leads_with_the_sequence_end_bullet_of_an_unknown_refusal() -> None:
    message = ("Cannot map layer 'conv2d_1':\n"
               f"  * Layer 'conv2d_1': {SEQUENCE_END}\n"
               "  * Layer 'conv2d_2': Some new limit of akida 3.")
    text = mapper.explain_mapping_error(message, wide_after_pool())
    assert "could not place layer 7 'conv2d_2' (Conv2D)" in text.splitlines()[0]
    assert text.splitlines()[1] == "  * Layer 'conv2d_2': Some new limit of akida 3."
    assert SEQUENCE_END in text and "Cannot map layer 'conv2d_1'" in text


def test_it_leads_an_unknown_mapping_message_with_the_layer_and_keeps_the_mappers_words() -> None:
    message = "Cannot map layer 'dense'. Input dimensions are too large to fit in a FNP."
    text = mapper.explain_mapping_error(message, three_256())
    assert text.startswith("the AKD1000's mapper could not place layer")
    assert "'dense' (Dense) on the chip" in text
    assert text.endswith(f"(the mapper said: {message})")


MALFORMED: list[Any] = [None, [None], [{}], [{"name": "conv2d_2", "config": "x",
                                              "input_shape": "bad"}],
                        [{"name": "conv2d_2", "class_name": "Conv2D",
                          "config": {"kernel_size": "odd"}, "input_shape": [None]}]]
MESSAGES = ["", "garbage", TOO_WIDE, WIDE_AFTER_POOL, TEMPLATE, TOO_MANY_NPS, FIRST_ONE_FILTER,
            MID_ONE_FILTER, "Cannot map layer '", "  * Layer 'x': \n  * Layer",
            "Not enough hardware components of type CNP1 available. 9 are needed but 99 are "
            "available."]


@pytest.mark.parametrize("layers", MALFORMED)
@pytest.mark.parametrize("message", MESSAGES)
def test_both_explanations_are_total(message: str, layers: Any) -> None:
    for explain in (mapper.explain_conversion_error, mapper.explain_mapping_error):
        text = explain(message, layers)
        assert isinstance(text, str)
        assert message.strip() == "" or text.strip()


@pytest.mark.parametrize(("index", "largest", "words"), [
    (0, float("inf"), ("layer 0 'rescaling' (Rescaling): its outputs overflow",
                       "are not finite", "Rescaling(1. / 255)")),
    (1, 4.2e12, ("layer 1 'conv2d' (Conv2D): its outputs overflow", "reach 4.2e+12",
                 "weights or settings are far too large")),
])
def test_an_overflowing_layer_is_named_with_its_own_fix(
        index: int, largest: float, words: tuple[str, ...]) -> None:
    layers = model(rescaling(), conv(16), relu(3.0), flatten(), dense(10))
    text = mapper.overflowing(layers[index], largest, 1e9)
    assert all(word in text for word in words), text
    assert "template's pattern" not in text
