"""The assignment's starting model, verbatim: it must FAIL the Akida 1.0 constraints.

Its last convolution max-pools straight into the Dense classifier, which AKD1000 cannot map.
"""

import tf_keras as keras

WEIGHT_BITS = 4
ACTIVATION_BITS = 4


def build_model():
    model_keras = keras.models.Sequential([
        keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),

        keras.layers.Conv2D(filters=16, kernel_size=3, strides=1, padding="same"),
        keras.layers.ReLU(max_value=3.0),
        keras.layers.MaxPooling2D((2, 2), padding="same"),

        keras.layers.Conv2D(filters=16, kernel_size=3, strides=1, padding="same"),
        keras.layers.ReLU(max_value=3.0),
        keras.layers.MaxPooling2D((2, 2), padding="same"),

        keras.layers.Flatten(),
        keras.layers.Dense(10)
    ], 'mnistnet')
    return model_keras
