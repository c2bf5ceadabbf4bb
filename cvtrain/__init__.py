"""cvtrain: config-driven training for computer vision on TensorFlow/Keras 3 and Hydra."""

__version__ = "0.1.0"
