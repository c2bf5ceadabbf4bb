"""Data: file indexes (pure Python, no TensorFlow), sources, and the tf.data pipeline."""
