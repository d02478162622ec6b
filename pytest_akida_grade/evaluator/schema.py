"""Which exported architectures the trusted side reads, and which of them it agrees to rebuild.

Pure (no TensorFlow). `parse` reads the JSON a sandbox handed over as data: a model with a list
of layers, within size caps; anything else fails `loads`. `refusal` says why a parsed model must
not be rebuilt by tf_keras (`model_from_json`), or None: every layer on a closed list of inert
layers (the assignment's, the template's scaffolding and the few students reach for that hold
nothing but weights), every config key known and of its type (numbers, booleans, strings from a
closed set, built-in initializer/regularizer/constraint names), a plain chain of layers. So
nothing that names a file, a path, a module or code, and no table or lookup, ever reaches
tf_keras. A refused model still loads: the rules judge its JSON, its accuracy is not graded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeGuard

from pytest_akida_grade.codec import RecordError, loads
from pytest_akida_grade.rules.specs import (
    Specs,
    cfg,
    cls,
    describe,
    input_shape,
    is_chain,
    model_layers,
)

ARCHITECTURE_BYTES = 8 << 20  # the sandbox's cap on model.json (watch.EXPORTS)
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_LAYERS = 200
MODELS = frozenset({"Sequential", "Functional", "Model"})
NAME_CAP = 200
FIX = ("use only the assignment's layers (Conv2D, SeparableConv2D, MaxPooling2D, "
       "ReLU(max_value=...), BatchNormalization, plus Rescaling, Flatten and Dense(10))")


class SchemaError(ValueError):
    """The export is not a model the grader can read at all; the message is for the student."""


# ---------------------------------------------------------------------------- parse


def parse(text: str) -> dict[str, Any]:
    """The architecture as data, or SchemaError: not JSON, not a model, too large to grade."""
    try:  # infinities stay: a ReLU(max_value=inf) is judged by the rules, not refused here
        config = loads(text, what="the exported architecture", limit=ARCHITECTURE_BYTES,
                       depth=MAX_DEPTH, values=MAX_NODES, finite=False)
    except RecordError as error:
        raise SchemaError(str(error)) from None
    if not isinstance(config, dict) or config.get("class_name") not in MODELS \
            or not isinstance(cfg(config).get("layers"), list):
        raise SchemaError("the exported architecture is not a Sequential or functional model: "
                          "build_model() must return keras.models.Sequential([...]) or a "
                          "keras.Model of tf_keras layers")
    layers = cfg(config)["layers"]
    if len(layers) > MAX_LAYERS:
        raise SchemaError(f"the model has {len(layers)} layers; the grader reads at most "
                          f"{MAX_LAYERS}")
    if not all(isinstance(layer, dict) and isinstance(layer.get("class_name"), str)
               and isinstance(layer.get("config"), dict) for layer in layers):
        raise SchemaError("the exported architecture has a malformed layer")
    return config


# ---------------------------------------------------------------------------- value types

Check = Callable[[object], bool]


def _number(value: object) -> TypeGuard[float]:
    """A finite int or float, not a bool (JSON has no other numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: object) -> bool:
    return type(value) is int and 0 < value < 1 << 31


def _bool(value: object) -> bool:
    return type(value) is bool


def _none(value: object) -> bool:
    return value is None


def _one_of(*allowed: object) -> Check:
    return lambda value: value in allowed and type(value) in (str, type(None), bool)


def _either(*checks: Check) -> Check:
    return lambda value: any(check(value) for check in checks)


def _size(value: object) -> bool:
    """An int or [h, w] of positive ints (kernel, strides, pool, dilation)."""
    return _positive_int(value) or (isinstance(value, list) and len(value) == 2
                                    and all(_positive_int(v) for v in value))


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= NAME_CAP and value.isprintable() \
        and "/" not in value


def _seed(value: object) -> bool:
    return value is None or (type(value) is int and 0 <= value < 1 << 63)


def _rate(value: object) -> bool:
    return _number(value) and 0 <= value < 1


def _axis(value: object) -> bool:
    return type(value) is int or (isinstance(value, list) and 0 < len(value) <= 4
                                  and all(type(v) is int for v in value))


def _padding_pairs(value: object) -> bool:
    return _positive_int(value) or value == 0 or (
        isinstance(value, list) and len(value) == 2
        and all(isinstance(p, list) and len(p) == 2
                and all(type(v) is int and 0 <= v <= 1 << 10 for v in p) for p in value))


# Names tf_keras' `activations.get` accepts (checked by tests/test_schema against tf_keras);
# what they mean is for the rules to judge (relu6 in an Activation, an unbounded relu).
ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "softmax", "softplus", "softsign", "tanh", "selu",
    "elu", "exponential", "gelu", "hard_sigmoid", "swish", "silu", "mish", "leaky_relu",
    "log_softmax"})
INITIALIZERS: dict[str, dict[str, Check]] = {
    **{name: {"seed": _seed} for name in ("GlorotUniform", "GlorotNormal", "HeUniform",
                                          "HeNormal", "LecunUniform", "LecunNormal")},
    "Zeros": {}, "Ones": {}, "Constant": {"value": _number},
    "RandomUniform": {"minval": _number, "maxval": _number, "seed": _seed},
    "RandomNormal": {"mean": _number, "stddev": _number, "seed": _seed},
    "TruncatedNormal": {"mean": _number, "stddev": _number, "seed": _seed},
    "Orthogonal": {"gain": _number, "seed": _seed},
    "VarianceScaling": {"scale": _number, "seed": _seed,
                        "mode": _one_of("fan_in", "fan_out", "fan_avg"),
                        "distribution": _one_of("truncated_normal", "untruncated_normal",
                                                "normal", "uniform")},
}
REGULARIZERS: dict[str, dict[str, Check]] = {
    "L1": {"l1": _number}, "L2": {"l2": _number}, "L1L2": {"l1": _number, "l2": _number}}
CONSTRAINTS: dict[str, dict[str, Check]] = {
    "MaxNorm": {"max_value": _number, "axis": _axis}, "NonNeg": {}, "UnitNorm": {"axis": _axis},
    "MinMaxNorm": {"min_value": _number, "max_value": _number, "rate": _number, "axis": _axis}}
LOWERCASE = {"glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
             "lecun_normal", "zeros", "ones", "orthogonal", "random_uniform", "random_normal",
             "truncated_normal", "l1", "l2", "l1_l2", "max_norm", "non_neg", "unit_norm"}


def _object(module: str, known: dict[str, dict[str, Check]]) -> Check:
    """None, a built-in's lowercase name, or its serialized form with typed arguments."""
    def check(value: object) -> bool:
        if value is None or (isinstance(value, str) and value in LOWERCASE):
            return True
        if not isinstance(value, dict) or set(value) - {"module", "class_name", "config",
                                                        "registered_name"}:
            return False
        name = value.get("class_name")
        arguments = known.get(name) if isinstance(name, str) else None
        config = value.get("config", {})
        return (arguments is not None and value.get("module") in (None, module)
                and value.get("registered_name") in (None, name)
                and isinstance(config, dict)
                and all(key in arguments and arguments[key](v) for key, v in config.items()))
    return check


def _dtype(value: object) -> bool:
    return value == "float32" or (isinstance(value, dict)
                                  and value.get("class_name") in ("Policy", "DTypePolicy")
                                  and value.get("config") == {"name": "float32"})


INITIALIZER = _object("keras.initializers", INITIALIZERS)
REGULARIZER = _object("keras.regularizers", REGULARIZERS)
CONSTRAINT = _object("keras.constraints", CONSTRAINTS)
COMMON: dict[str, Check] = {"name": _name, "trainable": _bool, "dtype": _dtype}
PADDING = _one_of("valid", "same")
DATA_FORMAT = _one_of("channels_last", None)


def _weights(*names: str) -> dict[str, Check]:
    """`<name>_initializer/_regularizer/_constraint` for each weight."""
    return {f"{name}_{part}": check for name in names
            for part, check in (("initializer", INITIALIZER), ("regularizer", REGULARIZER),
                                ("constraint", CONSTRAINT))}


WINDOW: dict[str, Check] = {"kernel_size": _size, "strides": _size, "padding": PADDING,
                            "data_format": DATA_FORMAT, "dilation_rate": _size,
                            "groups": _positive_int, "activation": _one_of(*ACTIVATIONS),
                            "use_bias": _bool, "activity_regularizer": REGULARIZER}
POOLING: dict[str, Check] = {"pool_size": _size, "strides": _either(_size, _none),
                             "padding": PADDING, "data_format": DATA_FORMAT}
DROPOUT: dict[str, Check] = {"rate": _rate, "noise_shape": _none, "seed": _seed}
GLOBAL: dict[str, Check] = {"data_format": DATA_FORMAT, "keepdims": _bool}
CLOSED: dict[str, dict[str, Check]] = {
    "InputLayer": {"batch_input_shape": lambda v: isinstance(v, list), "sparse": _one_of(False),
                   "ragged": _one_of(False), "name": _name, "dtype": _dtype},
    "Rescaling": {"scale": _number, "offset": _number},
    "Conv2D": {**WINDOW, "filters": _positive_int, **_weights("kernel", "bias")},
    "SeparableConv2D": {**WINDOW, "filters": _positive_int, "depth_multiplier": _positive_int,
                        **_weights("kernel", "bias", "depthwise", "pointwise")},
    "DepthwiseConv2D": {**WINDOW, "depth_multiplier": _positive_int,
                        **_weights("bias", "depthwise")},
    "MaxPooling2D": POOLING, "AveragePooling2D": POOLING,
    "GlobalAveragePooling2D": GLOBAL, "GlobalMaxPooling2D": GLOBAL,
    "BatchNormalization": {"axis": _axis, "momentum": _number, "epsilon": _number,
                           "center": _bool, "scale": _bool, "synchronized": _bool,
                           **_weights("beta", "gamma"),
                           "moving_mean_initializer": INITIALIZER,
                           "moving_variance_initializer": INITIALIZER},
    "ReLU": {"max_value": _either(_number, _none), "negative_slope": _number,
             "threshold": _number},
    "Activation": {"activation": _one_of(*ACTIVATIONS)},
    "LeakyReLU": {"alpha": _number},
    "Softmax": {"axis": _axis},
    "Dropout": DROPOUT, "SpatialDropout2D": DROPOUT,
    "GaussianNoise": {"stddev": _number, "seed": _seed},
    "ZeroPadding2D": {"padding": _padding_pairs, "data_format": DATA_FORMAT},
    "Flatten": {"data_format": DATA_FORMAT},
    "Dense": {"units": _positive_int, "activation": _one_of(*ACTIVATIONS), "use_bias": _bool,
              **_weights("kernel", "bias"), "activity_regularizer": REGULARIZER},
}
LAYER_KEYS = frozenset({"module", "class_name", "config", "registered_name", "build_config",
                        "name", "inbound_nodes"})
MODEL_KEYS = frozenset({"name", "layers", "trainable", "input_layers", "output_layers",
                        "build_input_shape"})


# ---------------------------------------------------------------------------- refusal


def refusal(config: dict[str, Any], specs: Specs) -> str | None:
    """Why the grader will not rebuild this model (for the student), or None."""
    if set(cfg(config)) - MODEL_KEYS or not is_chain(config):
        return ("the model is not a plain chain of layers, so the grader cannot rebuild it; "
                "build it as keras.models.Sequential([...]) as the template does")
    shape = input_shape(config)
    if shape is None:
        return ("the model has no defined input; give the first layer input_shape=(28, 28, 1) "
                "as the template does")
    declared = [None, *shape]
    entries = cfg(config)["layers"]
    if any(cfg(entry).get("batch_input_shape", declared) != declared for entry in entries) \
            or cfg(config).get("build_input_shape", declared) != declared:
        return "the model declares two different input shapes; give only input_shape=(28, 28, 1)"
    leading = entries[:len(entries) - len(specs)]  # a Sequential's InputLayer
    for entry in leading:
        problem = _layer_problem(entry, {"index": 0, "input_shape": shape, "output_shape": shape})
        if problem:
            return f"the model's input layer {problem}"
    for entry, spec in zip(model_layers(config), specs, strict=True):
        problem = _layer_problem(entry, spec)
        if problem:
            return f"{describe(spec)} {problem}"
    return None


def _layer_problem(entry: dict[str, Any], spec: dict[str, Any]) -> str | None:
    kind = cls(entry)
    allowed = CLOSED.get(kind)
    if allowed is None or entry.get("module") not in (None, "keras.layers") \
            or entry.get("registered_name") not in (None, kind):
        return (f"is not one of the layers the grader rebuilds (it grades only models it can "
                f"rebuild from their description, never your code); {FIX}")
    if set(entry) - LAYER_KEYS:
        return "has fields the grader does not know; build it from tf_keras' own layers"
    checks = {**COMMON, **allowed}
    for key, value in cfg(entry).items():
        if key == "batch_input_shape" and spec["index"] == 0:
            continue
        if key not in checks or not checks[key](value):
            return (f"has a setting the grader does not accept ({key}={_short(value)}); "
                    "use tf_keras' defaults or plain numbers for it")
    build = entry.get("build_config")
    if build is not None and build != {"input_shape": [None, *(spec["input_shape"] or [])]}:
        return "has a build_config that does not match the shape of its input"
    if spec["output_shape"] is None:
        return "has a shape the grader cannot work out (check its sizes and padding)"
    return None


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, dict | list) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
