"""Lecture 02's topic: networks fooled by noise, and images optimised to fool them.

- :mod:`utils.fooling.noise` -- the noise article's experiment (noise images, confidence
  tables, class counts, agreement between networks, the optional ImageNet run);
- :mod:`utils.fooling.images` -- fooling images and their transfer across the zoo.

Everything works on any device and keeps tensors there; no global random state is used.
"""

from utils.fooling.images import fooling_images, transfer_matrix
from utils.fooling.noise import (DESCRIBE_ROWS, IMAGENET_NETWORKS, agreement_matrix,
                                 class_counts, confidences, describe, imagenet_noise_experiment,
                                 imagenet_weight_files, noise_batch)

__all__ = ["noise_batch", "confidences", "describe", "DESCRIBE_ROWS", "fooling_images",
           "transfer_matrix", "agreement_matrix", "class_counts", "IMAGENET_NETWORKS",
           "imagenet_weight_files", "imagenet_noise_experiment"]
