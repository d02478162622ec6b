"""Made-up student modules for the plugin's tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Small enough for CI on 2 cores, real enough to learn: MNIST subsets and one short epoch.
FAST_SETTINGS = {
    "akida_students": "students",
    "akida_epochs": "1",
    "akida_batch_size": "64",
    "akida_train_limit": "3000",
    "akida_test_limit": "500",
    "akida_calibration_samples": "128",
    "akida_min_accuracy": "0.5",
    "akida_timeout": "60",
    "akida_cache_dir": "{cache}",
}


def fast_ini(**changes: str | None) -> str:
    """The fast settings as a pytest.ini; a change of None drops that setting."""
    settings = {**FAST_SETTINGS, **changes}
    lines = [f"{key} = {value}" for key, value in settings.items() if value is not None]
    return "\n[pytest]\n" + "\n".join(lines) + "\n"


FAST_INI = fast_ini()

TEMPLATE_LAYERS = """
    keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.MaxPooling2D((2, 2), padding="same"),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.MaxPooling2D((2, 2), padding="same"),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
"""

# The template plus a convolution after the last pooling: passes every fast check.
GOOD_LAYERS = TEMPLATE_LAYERS.replace(
    "    keras.layers.Flatten(),",
    '    keras.layers.Conv2D(16, 3, padding="same"),\n'
    "    keras.layers.ReLU(max_value=3.0),\n"
    "    keras.layers.Flatten(),")


def student_source(layers: str = GOOD_LAYERS, *, bits: tuple[object, object] = (4, 4),
                   extra: str = "") -> str:
    """A submission module whose build_model() returns a Sequential of `layers`."""
    return (
        "import tf_keras as keras\n\n"
        f"WEIGHT_BITS = {bits[0]!r}\nACTIVATION_BITS = {bits[1]!r}\n\n"
        "def build_model():\n"
        "    return keras.models.Sequential([" + textwrap.indent(layers, "    ") + "    ])\n"
        + textwrap.dedent(extra)
    )


# The handout's shape (../shared/assignment.md): imports, MNIST from keras, model_keras, its own
# training (tiny: 1,000 images, one epoch), the precision, quantize, convert, then the board.
HANDOUT_IMPORTS = """\
import numpy as np
from tensorflow import keras
from quantizeml.models import quantize, QuantizationParams
from cnn2snn import convert, set_akida_version, AkidaVersion
import akida"""
HANDOUT_DATA = """\
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train, y_train = x_train[:1000, :, :, np.newaxis], y_train[:1000]
print(x_train.shape, x_test.shape)"""
HANDOUT_MODEL = "model_keras = keras.models.Sequential([" + GOOD_LAYERS + "], 'mnistnet')"
HANDOUT_FIT = """\
model_keras.compile(optimizer="adam", metrics=["accuracy"],
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model_keras.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)"""
HANDOUT_QUANTIZE = """\
# quantize the model (The input weight_bits is fixed = 8bit)
qparams = QuantizationParams(input_weight_bits=8, weight_bits=weight_precision,
                             activation_bits=activation_bit)
model_quantized = quantize(model_keras, qparams=qparams, num_samples=64)
model_quantized.summary()"""
HANDOUT_CONVERT = """\
with set_akida_version(AkidaVersion.v1):
    model_akida = convert(model_quantized)
    model_akida.summary()"""
HANDOUT_BOARD = """\
device = akida.devices()[0]
model_akida.map(device)
model_akida.summary()
device.soc.power_measurement_enabled = True"""


def handout_cells(bits: tuple[int, int] = (4, 4), fit: bool = True) -> list[str]:
    """A notebook's code cells as the handout has students write them (a board cell last)."""
    precision = f"weight_precision = {bits[0]}\nactivation_bit = {bits[1]}"
    return [HANDOUT_IMPORTS, HANDOUT_DATA, HANDOUT_MODEL, *([HANDOUT_FIT] if fit else []),
            precision, HANDOUT_QUANTIZE, HANDOUT_CONVERT, HANDOUT_BOARD,
            "print('after the board')"]


def notebook(cells: list[str], markdown: str = "# ECE6790 Assignment 3") -> str:
    """A notebook (nbformat 4) of these code cells, after a markdown cell, as Jupyter saves it."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    made = new_notebook(cells=[new_markdown_cell(markdown), *map(new_code_cell, cells)])
    return str(nbformat.writes(made))


def add_student(pytester: pytest.Pytester, name: str, source: str) -> Path:
    path = pytester.path / "students" / f"{name}.py"
    path.write_text(source)
    return path


SAVE_WEIGHTS = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("submission", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.build_model()
if len(sys.argv) > 3:  # the harness's trained weights: a plain .npz of the arrays, in order
    import numpy as np
    with np.load(sys.argv[3]) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
model.save_weights(sys.argv[2])
"""


def save_weights(module: Path, target: Path, loaded_from: Path | None = None) -> None:
    """`model.save_weights(target)` with tf_keras, in a child process (no TensorFlow here).

    A `<name>.weights.h5` name makes tf_keras write its v3 format, as a student's file would be.
    """
    extra = [str(loaded_from)] if loaded_from else []
    subprocess.run([sys.executable, "-c", SAVE_WEIGHTS, str(module), str(target), *extra],
                   check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
