"""The library entry point: compile_schedule does what `schedc solve` does, for every registered solver."""

from __future__ import annotations

import numpy as np
import pytest

import schedc
from schedc.compile import compile_solution, problem_of_schedule
from schedc.errors import SolverError
from schedc.problem import problem_from_profile
from schedc.schedule import compute_from_schedule
from schedc.solvers import SOLVERS, Constraints, SolveContext, get_solver
from tests.conftest import make_tiny_adapter


@pytest.fixture(scope="module")
def profile_file(tiny_profile, tmp_path_factory):
    return tiny_profile.save(tmp_path_factory.mktemp("compile") / "tiny.profile.npz")


def test_compile_schedule_matches_the_solver_and_records_provenance(tiny_profile, profile_file):
    schedule = schedc.compile_schedule(profile_file, 0.5, cost="flops", allow={"residual"})
    direct = get_solver("dp")(problem_from_profile(tiny_profile, {"residual"}, "flops"), 0.5, Constraints())
    assert np.array_equal(compute_from_schedule(schedule), direct.compute)
    prov = schedule.provenance
    assert prov["solver"] == "dp" and prov["profile_file"] == str(profile_file) and prov["allowed"] == ["residual"]
    assert prov["cost_model"] == "flops" and prov["profile"] == tiny_profile.digest()
    assert "profile_file" not in schedc.compile_schedule(tiny_profile, 0.5, cost="flops").provenance
    assert problem_of_schedule(schedule) is not None  # the profile file is here, unchanged


def test_unknown_solver_fails_before_any_work(tmp_path):
    with pytest.raises(SolverError, match="unknown solver 'magic'"):
        schedc.compile_schedule(tmp_path / "missing.npz", 0.5, solver="magic")


def test_deployment_constraints_are_refused_by_name_by_solvers_that_ignore_them(tiny_profile):
    for name in ("dp", "uniform", "learned"):
        with pytest.raises(SolverError, match=f"the {name} solver does not model max_reuse, dependencies: use the ilp solver"):
            schedc.compile_schedule(tiny_profile, 0.5, solver=name, constraints=Constraints(max_reuse=1, dependencies=((0, 1),)))


def test_cache_limit_takes_the_profiles_cache_sizes(tiny_profile):
    sizes = tiny_profile.meta.cache_bytes
    schedule = schedc.compile_schedule(tiny_profile, 0.5, solver="ilp", allow={"residual"}, cost="flops",
                                       constraints=Constraints(max_cache_bytes=3 * max(sizes), time_limit=10.0))
    live = [sum(sizes[b] for b in range(len(sizes)) if row[b] == "residual") for row in schedule.decisions]
    assert max(live) <= 3 * max(sizes)
    with pytest.raises(SolverError, match="cache_bytes"):  # without a profile, the ilp needs the sizes given
        get_solver("ilp")(problem_from_profile(tiny_profile, {"residual"}, "flops"), 0.5, Constraints(max_cache_bytes=1.0))


def test_learned_solver_gets_the_model_from_its_context(tiny_profile):
    assert SOLVERS["learned"].needs_model and not SOLVERS["dp"].needs_model
    problem = problem_from_profile(tiny_profile, {"residual"}, "flops")
    with pytest.raises(SolverError, match="runs the model"):
        get_solver("learned")(problem, 0.5, Constraints())
    context = SolveContext(adapter=make_tiny_adapter(), iterations=3, samples=2, seed=1, progress=False)
    compiled = compile_solution(tiny_profile, 0.5, "learned", allow={"residual"}, cost="flops", context=context)
    assert compiled.solution.solver == "learned" and compiled.solution.stats["iterations"] == 3
    assert compiled.schedule.provenance["predicted"]["cost"] <= 0.5 + 1e-9
    with pytest.raises(SolverError, match="allow only residual reuse"):
        schedc.compile_schedule(tiny_profile, 0.5, "learned", cost="flops", context=context)
    with pytest.raises(SolverError, match="use refine=0"):
        schedc.compile_schedule(tiny_profile, 0.5, "learned", allow={"residual"}, refine=1, context=context)


def test_refine_wraps_a_model_free_solver(tiny_profile):
    context = SolveContext(tiny_profile, adapter=make_tiny_adapter(), samples=2)
    compiled = compile_solution(tiny_profile, 0.5, "dp", allow={"residual", "int8"}, cost="flops", refine=1, context=context)
    assert len(compiled.refine_history) == 2 and compiled.solution.stats["refine_rounds"] == 1
    assert compiled.solution.predicted_error == compiled.refine_history[-1].predicted


def test_a_context_for_another_profile_is_refused(tiny_profile, profile_file):
    from dataclasses import replace

    other = replace(tiny_profile, meta=tiny_profile.meta.replace(model="another"))
    with pytest.raises(SolverError, match="another profile"):
        schedc.compile_schedule(profile_file, 0.5, refine=1, context=SolveContext(other, adapter=make_tiny_adapter()))


def test_context_is_validated():
    with pytest.raises(SolverError, match="samples"):
        SolveContext(samples=0)
    with pytest.raises(SolverError, match="not both"):
        SolveContext(adapter=object(), adapter_loader=lambda: None)  # type: ignore[arg-type]
