"""`torchrun -m schedc profile` on 2 CPU processes (gloo) equals the 1-process profile; a failing rank
stops every rank with one line and writes nothing; `schedc merge` refuses shards that do not belong
together (issue #14)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")

from schedc.cli import main  # noqa: E402
from schedc.profile import Profile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--steps", "6", "--calib", "4", "--batch-size", "1", "--probe-steps", "2", "--probe-samples", "1",
        "--precisions", "none", "--no-latency", "-q"]


@pytest.fixture(scope="module")
def folder(dit_folder):
    return dit_folder


def _no_schedc_traceback(stderr: str) -> bool:
    """Each rank printed one line; the only traceback is torchrun's own report that a worker exited non-zero."""
    return str(ROOT / "schedc") not in stderr and stderr.count("Traceback") <= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "schedc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_two_gloo_ranks_profile_what_one_process_does(folder, tmp_path):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert main(["profile", str(folder), *ARGS, "-o", str(one)]) == 0
    run = _torchrun(["profile", str(folder), *ARGS, "-o", str(two)])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "(2 ranks)" in run.stdout and run.stdout.count("wrote") == 1  # rank 0 alone writes
    assert not (tmp_path / "two.npz.partial").exists()  # kept batches are dropped once the profile is written
    a, b = Profile.load(one), Profile.load(two)
    assert a.meta.calibration_seeds == b.meta.calibration_seeds and a.meta.config == b.meta.config
    for name, array in a._named_arrays().items():
        other = b._named_arrays()[name]
        if array.dtype.kind == "i":
            assert np.array_equal(array, other), name
        else:
            assert np.allclose(array, other, rtol=1e-9, atol=1e-12), name
    from schedc.problem import problem_from_profile
    from schedc.solvers.dp import solve_dp

    assert solve_dp(problem_from_profile(a), 0.5).actions() == solve_dp(problem_from_profile(b), 0.5).actions()


def test_more_ranks_than_batches_fails_on_every_rank_and_writes_nothing(folder, tmp_path):
    out = tmp_path / "x.npz"
    run = _torchrun(["profile", str(folder), *ARGS[:-1], "--batch-size", "4", "-q", "-o", str(out)])
    assert run.returncode != 0 and not out.exists()
    assert run.stderr.count("schedc: error: rank 0 of 2 failed") == 2 and _no_schedc_traceback(run.stderr)


def test_a_rank_that_fails_mid_profile_stops_every_rank_and_the_rerun_completes(folder, tmp_path):
    """Rank 1's model is broken (its weights missing after it loads): it fails inside the profile, and rank 0,
    waiting to sum the tables, stops with the same line; nothing is written; the rerun completes."""
    out = tmp_path / "p.npz"
    env_fail = {"SCHEDC_TEST_BREAK_RANK": "1"}
    run = _torchrun_with(["profile", str(folder), *ARGS, "-o", str(out)], env_fail)
    assert run.returncode != 0 and not out.exists()
    assert run.stderr.count("schedc: error: rank 1 of 2 failed") == 2 and _no_schedc_traceback(run.stderr)
    run = _torchrun(["profile", str(folder), *ARGS, "-o", str(out)])
    assert run.returncode == 0 and Profile.load(out).meta.calibration_seeds == (0, 1, 2, 3)


def _torchrun_with(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """torchrun through tests/break_rank.py, which breaks the model of the rank named in the environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", **env}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(ROOT / "tests" / "break_rank.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_merge_refuses_shards_that_do_not_belong_together(folder, tmp_path, capsys):
    shards = []
    for i, extra in enumerate((["--shard", "0/2"], ["--shard", "1/2", "--max-age", "3"], ["--shard", "1/2", "--probe-steps", "3"],
                               ["--shard", "1/2", "--classes", "1,2"])):
        shards.append(tmp_path / f"s{i}.npz")
        assert main(["profile", str(folder), *ARGS, *extra, "-o", str(shards[-1])]) == 0
    same = tmp_path / "s0copy.npz"
    assert main(["profile", str(folder), *ARGS, "--shard", "0/2", "-o", str(same)]) == 0
    capsys.readouterr()
    for pair, message in (((shards[0], shards[1]), "max_age"), ((shards[0], same), "calibration seeds"),
                          ((shards[0], shards[2]), "profiler options (probe_steps)"), ((shards[0], shards[3]), "model_source")):
        assert main(["merge", *map(str, pair), "-o", str(tmp_path / "m.npz")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.npz").exists()
