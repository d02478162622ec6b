"""The limits found by mapping, re-measured with the real toolchain on a virtual AKD1000.

Each rule that is not on BrainChip's constraints page (documented=False) is checked on both
sides of its boundary: the last size that maps and the first that does not, and the static rule
must agree with the toolchain on both. An akida/quantizeml/cnn2snn upgrade that moves a limit
fails here, with a test id that names the limit, instead of failing students.

Tiny models, 64 random calibration images, no training; the models that must map share one
probe per weight precision, so the whole file runs 9 quantize/convert/map rounds, each ~3 s of
Keras graph building, spread over two processes.
"""

from __future__ import annotations

import multiprocessing
import re
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from pytest_akida_grade.rules import akida_v1, mapper, specs

keras = pytest.importorskip("tf_keras")
akida = pytest.importorskip("akida")
CAP = specs.CNP_MAX_INPUT_CHANNELS
MAPS = "maps"
BLAMED = re.compile(r"[Ll]ayer '([^']+)'|first layer \(([^)]+)\)|"
                    r"QuantizedDepthwiseConv2D \(([^)]+)\)")


def conv(filters: int, kernel: int = 3, strides: int = 1) -> list[Any]:
    return [keras.layers.Conv2D(filters, kernel, strides=strides, padding="same"),
            keras.layers.ReLU(max_value=3.0)]


def sep(filters: int, kernel: int) -> list[Any]:
    return [keras.layers.SeparableConv2D(filters, kernel, padding="same"),
            keras.layers.ReLU(max_value=3.0)]


def small(channels: int, first: int = 16) -> list[Any]:
    """`channels` outputs on a 10x10 map (few NPs) from a 3x3 stride-3 input convolution."""
    if channels <= 512:  # the input convolution's own cap for a 3x3 kernel
        return conv(channels, 3, strides=3)
    return conv(first, 3, strides=3) + conv(channels, 1)


# Each probe: a model builder and the weight bits it is quantized with (A4: the limits are the
# same at A1). Layer names are Keras's, fresh for each model (conv2d, conv2d_1, ...).
PROBES: dict[str, tuple[Callable[[], list[Any]], int]] = {  # the slowest first
    # Must map: each layer sits at the last size that maps (few filters: wide layers need
    # many NPs, which is another limit).
    "at_w4_caps": (lambda: [*small(512), *sep(CAP[4][5], 7), *conv(CAP[4][7], 5), *conv(16, 7),
                            *conv(2), *conv(1), *conv(2)], 4),
    "at_w2_caps": (lambda: [*small(CAP[2][5], first=2), *conv(16, 5), *conv(CAP[2][7], 1),
                            *conv(16, 7)], 2),
    # Must fail: three Conv2D(256) on 28x28 need more NPs than the chip has (no static rule).
    "too_many_nps": (lambda: [*conv(16), *conv(256), *conv(256), *conv(256), *conv(4)], 4),
    # Must fail: one layer one step past its cap.
    "w4_1x1_over": (lambda: [*small(CAP[4][1] + 1), *conv(16, 1)], 4),
    "w4_7x7_over": (lambda: [*small(CAP[4][7] + 1), *conv(16, 7)], 4),
    "w2_1x1_over": (lambda: [*small(CAP[2][1] + 1), *conv(16, 1)], 2),
    "w2_7x7_over": (lambda: [*small(CAP[2][7] + 1), *conv(16, 7)], 2),
    "first_one_filter": (lambda: [*conv(1), *conv(16, 3, strides=2)], 4),
    "mid_one_filter": (lambda: [*conv(2), *conv(1), *conv(1)], 4),
}


@dataclass(frozen=True)
class Outcome:
    stage: str  # MAPS, or where the toolchain refused: quantize, convert, map
    message: str  # the raw message, as the evaluator records it
    layers: list[dict[str, Any]]
    weight_bits: int


@pytest.fixture(scope="module")
def probe() -> Callable[[str], Outcome]:
    """Every probe, run once for the module, on two fresh processes (spawned: no forked TF)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        outcomes = dict(zip(PROBES, pool.map(run_probe, PROBES), strict=True))
    return outcomes.__getitem__


def run_probe(name: str) -> Outcome:
    from pytest_akida_grade.evaluator.pipeline import layer_specs

    build, weight_bits = PROBES[name]
    keras.backend.clear_session()  # fresh layer names: conv2d, conv2d_1, ...
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              *build(), keras.layers.Flatten(), keras.layers.Dense(10)])
    layers = layer_specs(model)
    stage, message = _toolchain(model, weight_bits)
    return Outcome(stage, message, layers, weight_bits)


def _toolchain(model: Any, weight_bits: int) -> tuple[str, str]:
    """The evaluator's quantize, convert and map calls; the first refusal, as it records it."""
    from cnn2snn import AkidaVersion, convert, set_akida_version
    from quantizeml.models import QuantizationParams, quantize

    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype("float32")
    qparams = QuantizationParams(input_weight_bits=8, weight_bits=weight_bits,
                                 activation_bits=4, per_tensor_activations=True)
    stage = "quantize"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = quantize(model, qparams=qparams, samples=images, num_samples=64,
                                 batch_size=64, epochs=1)
            stage = "convert"
            with set_akida_version(AkidaVersion.v1):
                converted = convert(quantized)
        stage = "map"
        converted.map(akida.AKD1000(), hw_only=True)
    except Exception as error:
        prefix = "" if stage == "map" else f"{type(error).__name__}: "
        return stage, prefix + str(error).strip()
    return MAPS, ""


def _blamed(message: str) -> set[str]:
    """Every layer the toolchain's message names."""
    return {name for groups in BLAMED.findall(message) for name in groups if name}


# ------------------------------------------------------------------- the limits, both sides


@dataclass(frozen=True)
class Side:
    limit: str  # the limit in words, for the failure message
    probe: str
    layer: str  # the Keras name of the layer at the boundary
    rule: str
    refusal: str = MAPS  # MAPS, or words the toolchain's refusal must contain

    @property
    def maps(self) -> bool:
        return self.refusal == MAPS


ONE = "v1.one_filter_conv"
CNP = "v1.cnp_input_channels"
FILTER = mapper.FILTER_SIZE
SIDES = [
    Side(f"a W4 Conv2D with a 5x5 kernel (and so 1x1, 3x3) reads {CAP[4][5]} input channels",
         "at_w4_caps", "conv2d_1", CNP),
    Side(f"a W4 Conv2D with a 1x1 kernel (and so 3x3, 5x5) reads {CAP[4][1] + 1} input "
         "channels", "w4_1x1_over", "conv2d_1", CNP, FILTER),
    Side(f"a W4 Conv2D with a 7x7 kernel reads {CAP[4][7]} input channels",
         "at_w4_caps", "conv2d_2", CNP),
    Side(f"a W4 Conv2D with a 7x7 kernel reads {CAP[4][7] + 1} input channels",
         "w4_7x7_over", "conv2d_1", CNP, FILTER),
    Side(f"a W4 SeparableConv2D with a 7x7 kernel reads {specs.SEPARABLE_INPUT_CHANNELS_MAPPED} "
         "input channels", "at_w4_caps", "separable_conv2d", CNP),
    Side(f"a W2 Conv2D with a 5x5 kernel (and so 1x1, 3x3) reads {CAP[2][5]} input channels",
         "at_w2_caps", "conv2d_2", CNP),
    Side(f"a W2 Conv2D with a 1x1 kernel (and so 3x3, 5x5) reads {CAP[2][1] + 1} input "
         "channels", "w2_1x1_over", "conv2d_2", CNP, FILTER),
    Side(f"a W2 Conv2D with a 7x7 kernel reads {CAP[2][7]} input channels",
         "at_w2_caps", "conv2d_4", CNP),
    Side(f"a W2 Conv2D with a 7x7 kernel reads {CAP[2][7] + 1} input channels",
         "w2_7x7_over", "conv2d_1", CNP, FILTER),
    Side("a first Conv2D has 2 filters", "at_w2_caps", "conv2d", ONE),
    Side("a Conv2D with 1 filter reads 2 channels", "at_w4_caps", "conv2d_4", ONE),
    Side("a Conv2D with 2 filters reads 1 channel", "at_w4_caps", "conv2d_5", ONE),
    Side("a first Conv2D has 1 filter", "first_one_filter", "conv2d", ONE,
         "Impossible to quantize inputs"),
    Side("a Conv2D with 1 filter reads 1 channel", "mid_one_filter", "conv2d_2", ONE,
         "Invalid block found during conversion"),
]


def _side_id(side: Side) -> str:
    verb = "maps" if side.maps else "fails"
    return f"{verb}-when-{re.sub(r'[^0-9A-Za-z]+', '-', side.limit).strip('-')}"


@pytest.mark.parametrize("side", SIDES, ids=_side_id)
def test_the_static_rule_agrees_with_the_toolchain_at_each_boundary(
        probe: Callable[[str], Outcome], side: Side) -> None:
    outcome = probe(side.probe)
    versions = f"akida {akida.__version__}"
    if side.maps:
        if outcome.stage != MAPS and side.layer not in _blamed(outcome.message):
            pytest.fail(f"not checked: the shared probe '{side.probe}' failed at another "
                        f"layer: {outcome.message}")
        assert outcome.stage == MAPS, (
            f"LIMIT MOVED: {side.limit} no longer maps with {versions}; lower the cap in "
            f"specs.py. The toolchain said: {outcome.message}")
    else:
        assert outcome.stage != MAPS and side.refusal in outcome.message, (
            f"LIMIT MOVED: {side.limit} now {'maps' if outcome.stage == MAPS else 'fails'} "
            f"with {versions} (rule {side.rule} would be a false alarm); raise the cap in "
            f"specs.py. The toolchain said: {outcome.message or 'nothing'}")
        assert side.layer in _blamed(outcome.message), outcome.message
    found = akida_v1.v1_static(outcome.layers, weight_bits=outcome.weight_bits)
    fired = {v.layer_name for v in found if v.rule == side.rule}
    if side.maps:
        assert found == [], f"false alarm on a model the toolchain maps: {found}"
    else:
        assert side.layer in fired, f"{side.rule} missed {side.layer}: {found}"
        assert all(not v.documented for v in found if v.rule == side.rule)


@pytest.mark.parametrize("side", [s for s in SIDES if not s.maps], ids=_side_id)
def test_the_explanation_names_the_layer_the_toolchain_refused(
        probe: Callable[[str], Outcome], side: Side) -> None:
    outcome = probe(side.probe)
    explain = (mapper.explain_mapping_error if outcome.stage == "map"
               else mapper.explain_conversion_error)
    text = explain(outcome.message, outcome.layers)
    layer = specs.by_name(outcome.layers, side.layer)
    assert layer is not None
    assert text.startswith(specs.describe(layer)), text
    assert outcome.message in text  # the tools' own words stay searchable


def test_the_virtual_akd1000_has_78_nps_for_convolutions() -> None:
    nps = akida.AKD1000().mesh.nps
    assert len(nps) == specs.MAPPER_CNP1_NPS, (
        f"the virtual AKD1000 now lists {len(nps)} NPs: update specs.MAPPER_CNP1_NPS")
    assert all(akida.NP.Type.CNP1 in np_.types for np_ in nps)


def test_too_many_nps_is_explained_with_the_counts_against_the_chip(
        probe: Callable[[str], Outcome]) -> None:
    outcome = probe("too_many_nps")
    match = mapper.COMPONENTS.search(outcome.message)
    assert outcome.stage == "map" and match, outcome.message
    assert akida_v1.v1_static(outcome.layers) == []  # only the mapper knows this one
    needed, left = int(match.group(2)), int(match.group(3))
    text = mapper.explain_mapping_error(outcome.message, outcome.layers)
    assert text.startswith("layer 7 'conv2d_3' (Conv2D) needs"), text
    assert f"at least {specs.MAPPER_CNP1_NPS - left + needed} NPs" in text
    assert f"{specs.AKD1000_NPS} NPs in all" in text and "fewer or smaller layers" in text
    assert outcome.message in text
