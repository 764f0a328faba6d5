"""The bundled reference model is really trained: a digit classifier recognises what it was asked for."""

from __future__ import annotations

import torch

from schedc.datasets import class_accuracy, digits_tensors
from schedc.evaluate import EVAL_SEED_START


def test_classifier_recognises_real_digits():
    images, labels = digits_tensors()
    assert class_accuracy(images, labels) > 0.99


def test_full_compute_samples_have_the_requested_class(reference_adapter):
    inputs = reference_adapter.make_inputs(range(EVAL_SEED_START, EVAL_SEED_START + 100))  # 10 per class
    samples = reference_adapter.generate(inputs, reference_adapter.default_sampler)
    assert samples.shape == (100, 1, 8, 8)
    assert class_accuracy(samples, inputs.labels) >= 0.90


def test_generation_is_deterministic_and_batch_independent(reference_adapter):
    inputs = reference_adapter.make_inputs([5, 6, 7, 8])
    a = reference_adapter.generate(inputs, reference_adapter.default_sampler)
    b = reference_adapter.generate(inputs.subset(slice(1, 2)), reference_adapter.default_sampler)
    assert torch.equal(a, reference_adapter.generate(inputs, reference_adapter.default_sampler))
    assert torch.allclose(a[1:2], b, atol=1e-5)


def test_model_is_block_dominated(reference_adapter):
    """Block work dominates a step, so caching blocks can pay off."""
    block_flops, nonblock = reference_adapter.flops()
    assert len(block_flops) == 12
    assert nonblock < 0.05 * sum(block_flops)
