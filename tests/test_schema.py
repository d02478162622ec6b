"""evaluator/schema.py: what the trusted side agrees to rebuild, refused before deserializing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_akida_grade.evaluator.schema import Builtins, SchemaError, validate

BUILTINS = Builtins(
    layers=frozenset({"InputLayer", "Rescaling", "Conv2D", "ReLU", "Flatten", "Dense", "Lambda",
                      "Dropout"}),
    initializers=frozenset({"GlorotUniform", "Zeros", "glorot_uniform", "zeros"}),
    regularizers=frozenset({"L2", "l2"}), constraints=frozenset({"MaxNorm", "max_norm"}),
    activations=frozenset({"relu", "linear", "softmax"}))


def layer(class_name: str, name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name,
            "config": {"name": name, **config}, "registered_name": None}


def sequential(*layers: dict[str, Any]) -> str:
    return json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": [
        layer("InputLayer", "input_1", batch_input_shape=[None, 28, 28, 1]), *layers]},
        "keras_version": "2.19.0", "backend": "tensorflow"})


INITIALIZER = {"module": "keras.initializers", "class_name": "GlorotUniform",
               "config": {"seed": None}, "registered_name": None}


def test_it_accepts_tf_keras_own_layers_initializers_and_activations() -> None:
    text = sequential(layer("Conv2D", "conv2d", filters=16, activation="linear",
                            kernel_initializer=INITIALIZER, bias_initializer="zeros",
                            kernel_regularizer={"module": "keras.regularizers", "class_name": "L2",
                                                "config": {"l2": 0.1}, "registered_name": None}),
                      layer("Flatten", "flatten"), layer("Dense", "dense", units=10))
    assert validate(text, BUILTINS)["class_name"] == "Sequential"


def test_it_refuses_a_lambda_layer_before_anything_deserializes_it() -> None:
    text = sequential(layer("Lambda", "lambda", function=["4wEAAAAA", None, None],
                            function_type="lambda", module="__main__"))
    with pytest.raises(SchemaError, match=r"layer 'lambda' \(Lambda\) cannot be graded: a Lambda "
                                          "layer carries Python code"):
        validate(text, BUILTINS)


def test_it_refuses_a_custom_layer_naming_it() -> None:
    custom = {**layer("MyLayer", "my_layer"), "module": "students.alice",
              "registered_name": "Custom>MyLayer"}
    with pytest.raises(SchemaError, match=r"layer 'my_layer' \(MyLayer\) is registered as "
                                          "'Custom>MyLayer'"):
        validate(sequential(custom), BUILTINS)
    unregistered = {**layer("MyLayer", "my_layer"), "module": "keras.layers"}
    with pytest.raises(SchemaError, match="not one of tf_keras' built-ins"):
        validate(sequential(unregistered), BUILTINS)


@pytest.mark.parametrize("activation", [
    {"module": "builtins", "class_name": "function", "config": "my_relu",
     "registered_name": "function"},
    {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"},
    "my_relu",
])
def test_it_refuses_an_activation_that_is_a_students_function(activation: Any) -> None:
    with pytest.raises(SchemaError, match="layer 'dense' \\(Dense\\)"):
        validate(sequential(layer("Dense", "dense", units=10, activation=activation)),
                 BUILTINS)


def test_it_refuses_a_module_outside_tf_keras_even_for_a_known_name() -> None:
    sneaky = {"module": "antigravity", "class_name": "GlorotUniform", "config": {},
              "registered_name": None}
    with pytest.raises(SchemaError, match=r"antigravity\.GlorotUniform"):
        validate(sequential(layer("Dense", "dense", units=10, kernel_initializer=sneaky)),
                 BUILTINS)


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", "not valid JSON"),
    ('{"class_name": "Lambda", "config": {}}', "not a Sequential or functional model"),
    ("[" * 200 + "]" * 200, "not a Sequential or functional model"),
    ('{"class_name": "Sequential", "config": {"layers": ' + "[" * 100 + "]" * 100 + "}}",
     "nested too deeply"),
])
def test_it_refuses_malformed_or_unbounded_json_with_a_message(text: str, words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        validate(text, BUILTINS)


def test_a_real_tf_keras_model_passes_with_the_names_read_off_tf_keras() -> None:
    tf_keras = pytest.importorskip("tf_keras")
    from pytest_akida_grade.evaluator.rebuild import builtins

    model = tf_keras.Sequential([
        tf_keras.layers.Rescaling(1 / 255, input_shape=(28, 28, 1)),
        tf_keras.layers.Conv2D(8, 3, padding="same", kernel_constraint="max_norm"),
        tf_keras.layers.BatchNormalization(), tf_keras.layers.ReLU(max_value=6.0),
        tf_keras.layers.MaxPooling2D(), tf_keras.layers.SeparableConv2D(8, 3, padding="same"),
        tf_keras.layers.ReLU(6.0), tf_keras.layers.Flatten(), tf_keras.layers.Dense(10)])
    assert validate(model.to_json(), builtins())["class_name"] == "Sequential"
    assert "Lambda" not in builtins().layers and "Conv2D" in builtins().layers
