"""The reference model's data: scikit-learn's 8x8 digits, which ship inside scikit-learn."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)  # [1797, 8, 8] in 0..16, [1797]


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Images scaled to [-1, 1] as [N, 1, 8, 8] and labels [N]."""
    images, labels = _digits()
    x = torch.from_numpy(images / 8.0 - 1.0).unsqueeze(1)
    return x, torch.from_numpy(labels)


def to_pixel_features(samples: torch.Tensor) -> np.ndarray:
    """Samples in [-1, 1], [N, 1, 8, 8] -> the digits' 0..16 feature rows [N, 64] for the classifier."""
    x = (samples.clamp(-1, 1) + 1.0) * 8.0
    return x.reshape(x.shape[0], -1).cpu().numpy().astype(np.float64)


@lru_cache(maxsize=1)
def digit_classifier():
    """An RBF SVC fit on all of digits (~99% held-out accuracy on real digits)."""
    from sklearn.svm import SVC

    images, labels = _digits()
    return SVC(gamma=0.001, C=10.0).fit(images.reshape(len(images), -1), labels)


def class_accuracy(samples: torch.Tensor, labels: torch.Tensor) -> float:
    pred = digit_classifier().predict(to_pixel_features(samples))
    return float((pred == labels.cpu().numpy()).mean())
