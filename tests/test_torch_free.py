"""The compiler path imports and runs without torch: schedule format, problem, profile, every solver
module, the registry and compile_schedule. A subprocess makes torch unimportable before anything else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TORCH = '''
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, _NoTorch())
'''

SCRIPT = '''
import importlib
modules = ["schedc_runtime", "schedc_runtime.format", "schedc", "schedc.sampler_config", "schedc.schedule",
           "schedc.problem", "schedc.profile", "schedc.solvers", "schedc.solvers.base", "schedc.solvers.context",
           "schedc.solvers.dp", "schedc.solvers.joint", "schedc.solvers.ilp", "schedc.solvers.baselines",
           "schedc.solvers.brute", "schedc.compile"]
for name in modules:
    importlib.import_module(name)

import schedc
import yaml
from schedc_runtime import dump_schedule, load_schedule
from schedc.solvers import SOLVERS, Constraints

try:
    from schedc_runtime import apply_schedule  # the hooks need torch: only they may fail
except ImportError:
    pass
else:
    raise AssertionError("torch was importable: the test blocks nothing")

assert not SOLVERS["dp"].needs_model and SOLVERS["learned"].needs_model
for solver, allow in (("dp", None), ("ilp", {"residual", "output"}), ("uniform", {"residual"}), ("delta-dit", {"residual"})):
    schedule = schedc.compile_schedule(PROFILE, 0.5, solver=solver, allow=allow, cost="flops",
                                       constraints=Constraints(time_limit=10.0))
    again = load_schedule(yaml.safe_load(dump_schedule(schedule)))
    assert again.decisions == schedule.decisions and schedule.provenance["solver"] == solver, solver
    assert schedule.provenance["predicted"]["cost"] <= 0.5 + 1e-9, solver
    assert schedule.provenance["profile_file"] == PROFILE
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not leaked, leaked
print("ok")
'''


def test_compiler_path_needs_no_torch(tiny_profile, tmp_path):
    path = tiny_profile.save(tmp_path / "tiny.profile.npz")
    code = BLOCK_TORCH + f"PROFILE = {str(path)!r}\n" + textwrap.dedent(SCRIPT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
