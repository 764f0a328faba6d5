"""Bad input: one line on stderr, exit code 2, no traceback, no output file left behind."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from schedc.cli import main
from schedc.schedule import save_schedule
from tests.conftest import TINY_SAMPLER, schedule_for


@pytest.fixture(scope="module")
def files(tiny_profile, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    profile = tiny_profile.save(root / "tiny.profile.npz")
    corrupt_profile = root / "corrupt.profile.npz"
    corrupt_profile.write_bytes(b"PK\x03\x04 not really a zip")
    compute = np.ones((TINY_SAMPLER.steps, 4), dtype=bool)
    tiny_schedule = save_schedule(schedule_for(tiny_profile, compute), root / "tiny.yaml")
    corrupt_schedule = root / "corrupt.yaml"
    corrupt_schedule.write_text("schedc_schedule: 1\nsteps: [\n")
    return {"root": root, "profile": profile, "corrupt_profile": corrupt_profile,
            "tiny_schedule": tiny_schedule, "corrupt_schedule": corrupt_schedule}


def run(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "{root}/missing.npz", "--budget", "0.4"], "profile not found"),
        (["solve", "{corrupt_profile}", "--budget", "0.4"], "corrupt"),
        (["solve", "{profile}", "--budget", "0"], "budget must be in (0, 1]"),
        (["solve", "{profile}", "--budget", "1.5"], "budget must be in (0, 1]"),
        (["solve", "{profile}", "--budget", "nan"], "budget must be in (0, 1]"),
        (["solve", "{profile}", "--budget", "abc"], "budget must be a number"),
        (["solve", "{profile}", "--budget", "0.4", "--solver", "magic"], "unknown solver 'magic'"),
        (["solve", "{profile}", "--budget", "0.01"], "minimum achievable budget"),
        (["eval", "{root}/missing.yaml"], "schedule file not found"),
        (["eval", "{corrupt_schedule}"], "not valid YAML"),
        (["show", "{corrupt_schedule}"], "not valid YAML"),
        (["profile", "no-such-model"], "unknown model"),
        (["solve", "{profile}", "--budget", "0.1", "--solver", "ilp", "--allow", "residual", "--max-reuse", "1"],
         "infeasible: budget 0.1 is below the minimum"),
        (["solve", "{profile}", "--budget", "0.5", "--max-reuse", "1"], "solver does not model max_reuse: use the ilp solver"),
        (["solve", "{profile}", "--budget", "0.5", "--allow", "teleport"], "unknown option"),
        (["merge", "{profile}", "{profile}", "-o", "{root}/m.npz"], "sharing calibration seeds"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, capsys, argv, message):
    code, err = run([a.format(**files) for a in argv], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (files["root"] / "m.npz").exists()


def test_schedule_for_another_model_is_refused(files, capsys):
    """The tiny model's schedule names blocks the reference model does not have (or another fingerprint)."""
    code, err = run(["eval", files["tiny_schedule"], "--samples", "2", "--repeats", "1"], capsys)
    assert code == 2 and "not this model" in err and len(err.splitlines()) == 1


def test_failed_solve_writes_nothing(files, capsys):
    out = files["root"] / "never.yaml"
    code, _ = run(["solve", files["profile"], "--budget", "0.01", "-o", out], capsys)
    assert code == 2 and not out.exists()


def test_solve_and_show_write_files(files, capsys):
    out = files["root"] / "ok.yaml"
    code, _ = run(["solve", files["profile"], "--budget", "0.5", "-o", out], capsys)
    assert code == 0 and out.exists()
    code, _ = run(["show", out, "-o", files["root"] / "ok.png"], capsys)
    assert code == 0 and (files["root"] / "ok.png").read_bytes()[:4] == b"\x89PNG"


def test_console_script_prints_no_traceback(files):
    proc = subprocess.run(
        [sys.executable, "-m", "schedc.cli", "solve", str(files["profile"]), "--budget", "2"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_classes_take_ids_ranges_or_a_file_of_them(tmp_path):
    import argparse

    from schedc.cli_parser import parse_classes as _classes

    assert _classes("0-3,7") == (0, 1, 2, 3, 7)
    ids = tmp_path / "ids.txt"
    ids.write_text("0 2\n3-4,\n")
    assert _classes(f"@{ids}") == (0, 2, 3, 4)
    for bad in ("@" + str(tmp_path / "missing.txt"), "3-1", "a"):
        with pytest.raises(argparse.ArgumentTypeError):
            _classes(bad)
