"""profile -> solve -> eval from the CLI on a local diffusers folder (tiny random DiT, saved with
save_pretrained in the transformer/ + scheduler/ layout), and the folder errors a user can hit."""

from __future__ import annotations

import json

import pytest

diffusers = pytest.importorskip("diffusers")

from schedc.cli import main  # noqa: E402
from schedc.schedule import read_schedule  # noqa: E402


@pytest.fixture(scope="module")
def folder(dit_folder):
    return dit_folder


def test_profile_solve_eval_from_a_folder(folder, tmp_path, capsys):
    profile = tmp_path / "p.npz"
    assert main(["profile", str(folder), "--steps", "6", "--calib", "2", "--batch-size", "2", "--probe-steps", "2",
                 "--probe-samples", "1", "--precisions", "none", "--no-latency", "--classes", "1,2",
                 "--cfg", "two-call", "-q", "-o", str(profile)]) == 0
    path = tmp_path / "s.yaml"
    assert main(["solve", str(profile), "--budget", "0.5", "-o", str(path)]) == 0
    schedule = read_schedule(path)
    assert schedule.model.cfg == "two-call" and schedule.num_blocks == 3
    assert schedule.provenance["model_source"]["classes"] == [1, 2]
    capsys.readouterr()
    # no --model: the folder recorded in the schedule is loaded again
    assert main(["eval", str(path), "--samples", "3", "--timing-batch", "2", "--repeats", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schedule"]["class_acc"] is None  # a custom model has no judge
    assert 0 <= report["schedule"]["rel_l2"] < 1


@pytest.mark.parametrize("layout, message", [
    ("empty", "no transformer/ or unet/ folder"),
    ("no-weights", "no weights"),
    ("no-scheduler", "no scheduler/ folder"),
])
def test_folder_problems_are_one_line_errors(folder, tmp_path, capsys, layout, message):
    import shutil

    bad = tmp_path / layout
    bad.mkdir()
    if layout != "empty":
        (bad / "transformer").mkdir()
        shutil.copy(folder / "transformer" / "config.json", bad / "transformer" / "config.json")
    if layout == "no-weights":
        shutil.copytree(folder / "scheduler", bad / "scheduler")
    code = main(["profile", str(bad), "-q", "-o", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "x.npz").exists()


def test_text_model_without_embeddings_says_what_to_give(tmp_path, capsys):
    import torch

    torch.manual_seed(0)
    model = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4,
    )
    model.save_pretrained(tmp_path / "m" / "transformer")
    diffusers.FlowMatchEulerDiscreteScheduler().save_pretrained(tmp_path / "m" / "scheduler")
    code = main(["profile", str(tmp_path / "m"), "-q", "-o", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "prompt embeddings as cond" in err


def test_one_profile_for_several_settings_and_a_schedule_for_all_its_guidance_scales(folder, tmp_path, capsys):
    profile = tmp_path / "set.npz"
    assert main(["profile", str(folder), "--steps", "4,6", "--guidance-scale", "1.5,4", "--calib", "2", "--batch-size",
                 "2", "--probe-steps", "2", "--probe-samples", "1", "--precisions", "none", "--no-latency", "-q",
                 "-o", str(profile)]) == 0
    assert "4 settings" in capsys.readouterr().out
    out = tmp_path / "w.yaml"
    assert main(["solve", str(profile), "--budget", "0.5", "-q", "-o", str(out)]) == 2  # two step counts: pick one
    assert "--steps 4" in capsys.readouterr().err and not out.exists()
    assert main(["solve", str(profile), "--budget", "0.5", "--steps", "6", "--for", "worst", "--evaluations", "3",
                 "-q", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "compiled for the worst over g = 1.5" in printed
    schedule = read_schedule(out)
    confidence = schedule.provenance["stats"].get("lead_confidence")  # None: a single-setting schedule led anyway
    assert ("bootstrap confidence" in printed) == (confidence is not None)
    assert schedule.num_steps == 6 and schedule.provenance["compiled_for"]["objective"] == "worst"
    assert [s["guidance_scale"] for s in schedule.provenance["compiled_for"]["settings"]] == [1.5, 4.0]
    eval_args = ["eval", str(out), "--samples", "2", "--timing-batch", "2", "--repeats", "1", "--json"]
    assert main(eval_args + ["--guidance-scale", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["sampler"]["guidance_scale"] == 4.0
    assert report["schedule"]["predicted_psnr"] == pytest.approx(schedule.provenance["stats"]["by_setting"]["4"]["predicted_psnr"], abs=1e-3)
    se = schedule.provenance["stats"]["by_setting"]["4"]["predicted_psnr_se"]  # that scale's own standard error
    assert [n for n in report["settings"]["notes"] if n.startswith(f"predicted {report['schedule']['predicted_psnr']:.2f} ± {se:.2f} dB")]
    assert main(eval_args + ["--guidance-scale", "7"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schedule"]["predicted_psnr"] is None and any("outside" in n for n in report["settings"]["notes"])
    assert main(eval_args + ["--steps", "4"]) == 2
    assert "schedc solve PROFILE --steps 4" in capsys.readouterr().err
    # shards of a multi-setting profile merge setting by setting
    shards = [tmp_path / f"shard{i}.npz" for i in range(2)]
    for i, shard in enumerate(shards):
        assert main(["profile", str(folder), "--steps", "4", "--guidance-scale", "1.5,4", "--calib", "2", "--batch-size",
                     "1", "--probe-steps", "2", "--probe-samples", "1", "--precisions", "none", "--no-latency",
                     "--shard", f"{i}/2", "-q", "-o", str(shard)]) == 0
    assert main(["merge", *map(str, shards), "-o", str(tmp_path / "merged.npz")]) == 0
    assert "2 calibration samples, 2 settings" in capsys.readouterr().out
