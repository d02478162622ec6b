"""evaluator/schema.py and rules/architecture.py: the exported JSON read as data; what the
trusted side agrees to rebuild (a closed list), refused before anything deserializes it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_akida_grade.evaluator.schema import ACTIVATIONS, SchemaError, parse, refusal
from pytest_akida_grade.rules.architecture import budget_problem, layer_specs, parameters

INPUT = [None, 28, 28, 1]


def layer(class_name: str, name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name,
            "config": {"name": name, **config}, "registered_name": None}


def sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "m", "layers": [
        layer("InputLayer", "input_1", batch_input_shape=INPUT), *layers]},
        "keras_version": "2.19.0", "backend": "tensorflow"}


def conv(name: str = "conv2d", **config: Any) -> dict[str, Any]:
    return layer("Conv2D", name, **{"filters": 16, "kernel_size": [3, 3], "strides": [1, 1],
                                    "padding": "same", **config})


CLASSIFIER = (layer("Flatten", "flatten"), layer("Dense", "dense", units=10))
INITIALIZER = {"module": "keras.initializers", "class_name": "GlorotUniform",
               "config": {"seed": None}, "registered_name": None}


def why(config: dict[str, Any]) -> str | None:
    """What the trusted side says of this exported model: refusal, then budgets."""
    parsed = parse(json.dumps(config))
    specs = layer_specs(parsed)
    return refusal(parsed, specs) or budget_problem(specs)


def test_it_rebuilds_the_assignments_layers_with_tf_keras_own_objects() -> None:
    model = sequential(conv(kernel_initializer=INITIALIZER, bias_initializer="zeros",
                            kernel_regularizer={"module": "keras.regularizers", "class_name": "L2",
                                                "config": {"l2": 0.1}, "registered_name": None}),
                       layer("ReLU", "re_lu", max_value=6.0), *CLASSIFIER)
    assert why(model) is None


def test_it_works_out_shapes_and_parameters_without_building_anything() -> None:
    specs = layer_specs(sequential(conv(), layer("MaxPooling2D", "pool", pool_size=[2, 2],
                                                 strides=[2, 2], padding="same"), *CLASSIFIER))
    assert [s["output_shape"] for s in specs] == [[28, 28, 16], [14, 14, 16], [3136], [10]]
    assert [parameters(s) for s in specs] == [160, 0, 0, 31_370]


@pytest.mark.parametrize(("extra", "words"), [
    (layer("IntegerLookup", "lookup", vocabulary="/root/secret"), "not one of the layers"),
    (layer("StringLookup", "lookup", vocabulary="/etc/shadow"), "not one of the layers"),
    (layer("TextVectorization", "tv", vocabulary="/etc/shadow"), "not one of the layers"),
    (layer("Lambda", "lambda", function=["4wEAAAAA", None, None]), "not one of the layers"),
    ({**layer("MyLayer", "mine"), "module": "students.alice", "registered_name": "Custom>My"},
     "not one of the layers"),
    ({**layer("ReLU", "re_lu", max_value=6.0), "module": "os"}, "not one of the layers"),
    (layer("ReLU", "re_lu", max_value=6.0, path="/etc/passwd"), "path="),
    (layer("Dense", "hidden", units=10, activation={"module": "os", "class_name": "function",
                                                     "config": "system"}), "activation="),
    (layer("Dense", "hidden", units=10, activation="my_relu"), "activation="),
    (layer("Dense", "hidden", units=10, kernel_initializer={
        "module": "antigravity", "class_name": "GlorotUniform", "config": {}}),
     "kernel_initializer="),
    (layer("Dropout", "drop", rate=0.5, noise_shape=[1, 1]), "noise_shape="),
])
def test_it_refuses_to_rebuild_what_is_not_on_its_closed_list(extra: dict[str, Any],
                                                               words: str) -> None:
    problem = why(sequential(conv(), extra, *CLASSIFIER))
    assert problem is not None and words in problem
    assert "layer 1" in problem  # names the layer, and never echoes a long value


def test_it_refuses_a_build_config_that_would_allocate_another_shape() -> None:
    huge = {**conv(), "build_config": {"input_shape": [None, 28, 28, 100_000]}}
    assert "build_config" in (why(sequential(huge, *CLASSIFIER)) or "")


def test_it_refuses_two_input_shapes() -> None:
    model = sequential(conv(batch_input_shape=[None, 28, 28, 100_000]), *CLASSIFIER)
    assert "two different input shapes" in (why(model) or "")


def test_it_refuses_a_giant_architecture_before_allocating_it_giving_both_numbers() -> None:
    giant = sequential(layer("Flatten", "flatten"), layer("Dense", "dense", units=1_200_000),
                       layer("Dense", "out", units=10))
    problem = why(giant) or ""
    assert "12,000,010 parameters" not in problem  # 940 million: the number is the real one
    assert "parameters" in problem and "16,000,000" in problem


def test_it_refuses_a_layer_whose_output_no_akd1000_could_map() -> None:
    wide = sequential(conv(filters=4096), layer("GlobalAveragePooling2D", "gap"),
                      layer("Dense", "dense", units=10))
    assert "outputs 3,211,264 values" in (why(wide) or "")


def test_it_rebuilds_a_functional_chain_but_not_a_branching_model() -> None:
    def functional(second_input: str) -> dict[str, Any]:
        nodes = {"conv2d": "input_1", "flatten": second_input, "dense": "flatten"}
        layers = [{**layer("InputLayer", "input_1", batch_input_shape=INPUT),
                   "name": "input_1", "inbound_nodes": []}]
        for entry in (conv(), *CLASSIFIER):
            name = entry["config"]["name"]
            layers.append({**entry, "name": name, "inbound_nodes": [[[nodes[name], 0, 0, {}]]]})
        return {"class_name": "Functional", "config": {
            "name": "model", "layers": layers, "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense", 0, 0]]}}

    assert why(functional("conv2d")) is None
    assert "plain chain" in (why(functional("input_1")) or "")


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", "not valid JSON"),
    ('{"class_name": "Lambda", "config": {}}', "not a Sequential or functional model"),
    ("[" * 200 + "]" * 200, "nested more than 64 levels deep"),
    ("[" * 50_000, "nested more than 64 levels deep"),
    ('{"class_name": "Sequential", "config": {"layers": ' + "[" * 100 + "]" * 100 + "}}",
     "nested more than 64 levels deep"),
    ("[" + "0," * 200_001 + "0]", "holds more than 200,000 values"),
    ('{"class_name": "Sequential", "config": {"layers": [1, 2]}}', "malformed layer"),
])
def test_it_refuses_malformed_or_unbounded_json_with_a_message(text: str, words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        parse(text)


def test_every_activation_name_it_accepts_is_one_tf_keras_accepts() -> None:
    tf_keras = pytest.importorskip("tf_keras")
    for name in sorted(ACTIVATIONS):
        assert callable(tf_keras.activations.get(name)), name


def test_its_specs_of_real_models_are_exactly_the_rebuilt_models() -> None:
    tf_keras = pytest.importorskip("tf_keras")
    from pytest_akida_grade.evaluator.pipeline import layer_specs as rebuilt_specs

    layers = tf_keras.layers
    for model in (
        tf_keras.Sequential([
            layers.Rescaling(1 / 255, input_shape=(28, 28, 1)),
            layers.Conv2D(8, 3, padding="same", kernel_constraint="max_norm"),
            layers.BatchNormalization(), layers.ReLU(max_value=6.0),
            layers.MaxPooling2D(), layers.SeparableConv2D(8, 5, strides=2),
            layers.ReLU(6.0), layers.Dropout(0.2), layers.Flatten(), layers.Dense(10)]),
        tf_keras.Sequential([
            layers.Rescaling(1 / 255, input_shape=(28, 28, 1)),
            layers.Conv2D(4, 3, activation="relu6"), layers.DepthwiseConv2D(3, depth_multiplier=2),
            layers.LeakyReLU(), layers.AveragePooling2D(3, strides=2),
            layers.ZeroPadding2D(((1, 2), (0, 1))), layers.Activation("relu6"),
            layers.GlobalAveragePooling2D(), layers.Dense(10)]),
    ):
        config = json.loads(model.to_json())
        specs = layer_specs(config)
        assert why(config) is None
        assert [s["output_shape"] for s in specs] == \
            [list(layer.output_shape[1:]) for layer in model.layers]
        assert sum(parameters(s) or 0 for s in specs) == model.count_params()
        assert rebuilt_specs(model) == specs
