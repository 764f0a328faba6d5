"""The prediction's gap to the held-out measurement, judged against the two seed sets' own noise."""

import math

import pytest
import torch

from schedc.metrics import prediction_gap, quality


def test_quality_reports_the_psnr_means_standard_error():
    torch.manual_seed(0)
    ref = torch.rand(5, 1, 4, 4) * 2 - 1
    test = ref + 0.01 * torch.arange(1, 6).view(5, 1, 1, 1) * torch.randn(5, 1, 4, 4)
    each = [10 * math.log10(4 / float((test[i].clamp(-1, 1) - ref[i]).pow(2).mean())) for i in range(5)]
    q = quality(test, ref)
    assert q["psnr"] == pytest.approx(sum(each) / 5, rel=1e-5)
    assert q["psnr_se"] == pytest.approx(torch.tensor(each).std().item() / math.sqrt(5), rel=1e-4)
    assert quality(test[:1], ref[:1])["psnr_se"] == 0.0


def test_the_gap_is_called_noise_only_within_two_standard_errors_of_the_difference():
    inside = prediction_gap(40.0, 0.3, 40.7, 0.4)  # gap 0.7 dB, 2 x 0.5 = 1.0 dB
    outside = prediction_gap(40.0, 0.3, 41.2, 0.4)  # gap 1.2 dB
    assert "-0.70 dB is within two standard errors" in inside and "(1.00 dB)" in inside
    assert "-1.20 dB is more than two standard errors" in outside and "more than seed noise" in outside
