"""Nothing lost: no command overwrites one of its inputs or writes where it cannot; errors come before work;
no figure is measured against a broken full-compute reference."""

from __future__ import annotations

import time

import pytest
import torch
import yaml

from schedc.cli import main
from schedc.errors import ReferenceSampleError
from schedc.metrics import check_reference
from schedc.models.adapter import GenerationInputs
from schedc.schedule import save_schedule
from tests.conftest import schedule_for


@pytest.fixture(scope="module")
def files(tiny_profile, tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("outputs")
    profile = tiny_profile.save(root / "tiny.profile.npz")
    schedule = save_schedule(schedule_for(tiny_profile, np.ones((8, 4), dtype=bool)), root / "tiny.yaml")
    (root / "a-directory").mkdir()
    (root / "a-file.txt").write_text("not a folder")
    return {"root": root, "profile": profile, "schedule": schedule}


def run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "{profile}", "--budget", "0.4", "-o", "{profile}"], "also an input"),
        (["show", "{schedule}", "-o", "{schedule}"], "also an input"),
        (["merge", "{profile}", "{profile}", "-o", "{profile}"], "also an input"),
        (["solve", "{profile}", "--budget", "0.4", "-o", "{root}/a-directory"], "is a directory"),
        (["show", "{schedule}", "-o", "{root}/a-directory"], "is a directory"),
        (["solve", "{profile}", "--budget", "0.4", "-o", "{root}/a-file.txt/x.yaml"], "not a writable directory"),
        (["solve", "{profile}", "--budget", "0.4", "--solver", "dp", "-o", "/proc/schedc-test.yaml"], "cannot write"),
    ],
)
def test_outputs_never_clobber_inputs_or_trace_back(files, capsys, argv, message):
    inputs = {p: p.read_bytes() for p in (files["profile"], files["schedule"])}
    code, err = run([a.format(**files) for a in argv], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert all(p.read_bytes() == data for p, data in inputs.items())  # inputs untouched
    assert not list(files["root"].glob(".*.tmp"))  # no partial file left behind


def test_eval_refuses_a_schedule_for_other_timesteps_before_any_model_work(tmp_path, capsys):
    """A hand-cut 49-step schedule (timesteps no 49-step sampler gives) fails at once, not after a rollout."""
    data = yaml.safe_load(open("schedules/reference-dit-b0.40.yaml"))
    data["model"]["steps"] = 49
    data["model"]["timesteps"] = data["model"]["timesteps"][:49]
    data["steps"] = [e for e in data["steps"] if e["step"] < 49]
    data["sampling"]["steps"] = 49
    data["provenance"]["calibration_seeds"] = "0-31"
    path = tmp_path / "cut.yaml"
    path.write_text(yaml.safe_dump(data))
    started = time.process_time()
    code, err = run(["eval", path, "--samples", "4", "--repeats", "1"], capsys)
    assert code == 2 and "compile a schedule for this sampler" in err, err
    assert time.process_time() - started < 10


class _Adapter:
    def __init__(self, sample_range):
        self.sample_range = sample_range


def test_a_diverged_reference_is_refused():
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    inputs = GenerationInputs(noise, torch.zeros(4, dtype=torch.long), (0, 1, 2, 3))
    check_reference(_Adapter((-1.0, 1.0)), noise.clamp(-1, 1), inputs)  # a sample in range: fine
    check_reference(_Adapter(None), 3 * noise, inputs)  # unknown range, noise-sized: fine
    with pytest.raises(ReferenceSampleError, match="NaN or inf"):
        check_reference(_Adapter(None), noise / 0.0, inputs)
    with pytest.raises(ReferenceSampleError, match="outside the model's sample range"):
        check_reference(_Adapter((-1.0, 1.0)), 5 * noise, inputs)
    with pytest.raises(ReferenceSampleError, match="the sampler diverges"):
        check_reference(_Adapter(None), 9700 * noise, inputs)


def test_a_diverging_diffusers_scheduler_is_refused_before_any_figure(tmp_path, capsys):
    """DPM-Solver++ on a cosine schedule without lambda_min_clipped reaches thousands: profile says so."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = diffusers.DiTTransformer2DModel(
        sample_size=8, patch_size=2, in_channels=1, out_channels=1, num_layers=2, num_attention_heads=2,
        attention_head_dim=8, norm_type="ada_norm_zero", num_embeds_ada_norm=4,
    )
    model.save_pretrained(tmp_path / "folder" / "transformer")
    diffusers.DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", algorithm_type="dpmsolver++",
                                          timestep_spacing="trailing").save_pretrained(tmp_path / "folder" / "scheduler")
    out = tmp_path / "p.npz"
    code, err = run(["profile", tmp_path / "folder", "--steps", "10", "--calib", "2", "--batch-size", "2",
                     "--probe-steps", "0", "--precisions", "none", "--no-latency", "--classes", "1,2", "-q",
                     "-o", out], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "the sampler diverges" in err, err
    assert not out.exists()
