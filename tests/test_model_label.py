"""The model's second output: a class label derived from the probability alone."""

from __future__ import annotations

import numpy as np

from inferscale.model import label


def test_label_is_one_from_one_half_on_and_zero_below():
    probabilities = np.array([0.0, 0.4999999, 0.5, 0.73, 1.0])
    labels = label(probabilities)
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 0, 1, 1, 1]


def test_label_keeps_the_batch_shape():
    assert label(np.empty(0)).shape == (0,)
    assert label(np.full(7, 0.9)).shape == (7,)
