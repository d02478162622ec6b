"""An example design that passes every fast check: the template with a third convolution.

A (separable) convolution now follows the last max pooling, as Akida 1.0 requires, and the
strided input convolution keeps the classifier small (7 x 7 x 16 = 784 inputs).
"""

import tf_keras as keras

WEIGHT_BITS = 4
ACTIVATION_BITS = 4


def build_model():
    return keras.models.Sequential([
        keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),

        keras.layers.Conv2D(filters=16, kernel_size=3, strides=1, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(max_value=3.0),
        keras.layers.MaxPooling2D((2, 2), padding="same"),

        keras.layers.Conv2D(filters=32, kernel_size=3, strides=1, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(max_value=3.0),
        keras.layers.MaxPooling2D((2, 2), padding="same"),

        keras.layers.SeparableConv2D(filters=16, kernel_size=3, strides=1, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(max_value=3.0),

        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ], "three_convs")
