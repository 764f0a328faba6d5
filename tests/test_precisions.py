"""The precision registry: lookup, the parts' costs and kernels, adding a precision, and numbers that
stay bit-identical to the implementation before the registry."""

from __future__ import annotations

import ast
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from schedc_runtime import quant
from schedc_runtime.precisions import (
    PRECISIONS,
    Precision,
    QuantLinear,
    UnknownPrecisionError,
    block_kernels,
    get_precision,
    register_precision,
    unregister_precision,
)

CPU = torch.device("cpu")
REDUCED = ("int8", "fp8", "int4w")


# -- bit-identity with the pre-registry QuantizedLinear -------------------------------------------------
# Weights and inputs are chosen so every float32 matmul below is exact (power-of-two scales, small
# dyadic values), so the checksums do not depend on summation order, thread count or CPU.

def _exact_linear() -> nn.Linear:
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-100, 101, (48, 64), generator=g).float() / 16  # [out, in], |w| <= 6.25
    sign = torch.randint(0, 2, (48,), generator=g).float() * 2 - 1  # [out]
    w[:, 0] = 28.0 * sign  # row amax 28 = 448/16 (fp8 scale 1/16), int4 group-0 amax 28 = 7*4
    w[:, 32] = 7.0 * sign  # int4 group-1 amax 7 = 7*1
    return _linear(w, g)


def _general_linear() -> nn.Linear:
    g = torch.Generator().manual_seed(1)
    w = torch.randint(-10**6, 10**6, (48, 64), generator=g).float() / 10**6 * torch.linspace(0.1, 3, 64)  # [out, in]
    return _linear(w, g)


def _linear(w: torch.Tensor, g: torch.Generator) -> nn.Linear:
    linear = nn.Linear(64, 48)
    linear.weight.data.copy_(w)
    linear.bias.data.copy_(torch.randint(-10**6, 10**6, (48,), generator=g).float() / 10**6)  # [out]
    return linear.requires_grad_(False)


def _exact_input(rows: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(rows)
    x = torch.randint(-400, 401, (rows, 64), generator=g).float() / 8  # [M, in], multiples of 1/8
    x[:, 5] = 56.0  # token amax 56 = 448/8: fp8 activation scale 1/8
    return x


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(bytes(t.view(torch.uint8).flatten().tolist()))
    return h.hexdigest()[:16]


# Computed with runtime/quant.py at 32717d1 (if/elif QuantizedLinear), before the registry existed.
REFERENCE = {
    "int8": ("0ea8368a6afe2227", "65094f9bd0cddac2", "379799fe593dab5b"),
    "fp8": ("85a2c329ce7affdf", "42e625e7ad7fb6ff", "d2491401cc597992"),
    "int4w": ("901b1f8726f20d36", "c80b1d2d62d38e85", "d16473b23fdd5b66"),
}


@pytest.mark.parametrize("precision", REDUCED)
def test_numbers_are_bit_identical_to_the_pre_registry_code(precision):
    exact_buffers, general_buffers, outputs = REFERENCE[precision]
    q = quant.quantize_block(nn.Sequential(_exact_linear()), precision)
    assert _digest(q.state_dict()) == exact_buffers
    assert _digest(quant.quantize_block(nn.Sequential(_general_linear()), precision).state_dict()) == general_buffers
    with torch.no_grad():  # M = 8 takes int8's float path, M = 40 its _int_mm path; 3-D checks the reshape
        ys = {"y8": q(_exact_input(8)), "y40": q(_exact_input(40)), "y3d": q(_exact_input(40).reshape(2, 20, 64))}
    assert _digest(ys) == outputs


# -- the registry -------------------------------------------------------------------------------------

def test_registry_lists_the_built_ins_in_order_and_is_read_only():
    assert tuple(PRECISIONS) == ("native", *REDUCED)
    assert quant.PRECISIONS == REDUCED  # the facade's tuple of reduced precisions is unchanged
    for name, part in PRECISIONS.items():
        assert get_precision(name) is part and part.name == name
    with pytest.raises(TypeError):
        PRECISIONS["int8"] = PRECISIONS["fp8"]  # type: ignore[index]


def test_unknown_precision_is_a_one_line_value_error_listing_the_known_ones():
    with pytest.raises(UnknownPrecisionError) as info:
        get_precision("int2")
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert "'int2'" in message and all(name in message for name in PRECISIONS)
    with pytest.raises(ValueError, match="unknown precision 'int2'"):
        quant.quantize_block(nn.Sequential(nn.Linear(32, 32)), "int2")
    with pytest.raises(ValueError):
        quant.QuantizedLinear(nn.Linear(32, 32), "native")  # the facade builds reduced precisions only


def test_flop_costs_and_the_solvers_table_agree():
    from schedc.problem import FLOP_COST

    assert {name: part.flop_cost for name, part in PRECISIONS.items()} == {
        "native": 1.0, "int8": 0.5, "fp8": 0.5, "int4w": 1.0}
    assert all(FLOP_COST[name] == part.flop_cost for name, part in PRECISIONS.items())


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_every_precision_quantizes_a_block_and_reports_its_kernel(name):
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 64)).requires_grad_(False)
    part = get_precision(name)
    copy = quant.quantize_block(block, name)
    assert all(type(m) is nn.Linear for m in block.modules() if isinstance(m, nn.Linear))  # original untouched
    x = torch.randn(24, 64)  # [M, in]
    with torch.no_grad():
        ref, out = block(x), copy(x)
    rel = float((out - ref).norm() / ref.norm())
    linears = [m for m in copy.modules() if isinstance(m, QuantLinear)]
    if name == "native":
        assert torch.equal(out, ref) and not linears and block_kernels(copy) == set()
        assert part.kernel(CPU) == "native"
        return
    assert 0 < rel < 0.15
    expected = {"int8": "int8-matmul", "fp8": "simulated", "int4w": "weight-only"}[name]
    assert part.kernel(CPU) == expected and block_kernels(copy) == {expected}
    assert len(linears) == 2 and all(m.precision == name for m in linears)
    for original, q in zip((block[0], block[2]), linears):
        assert part.weight_bytes(original) == q.weight_bytes() < original.weight.numel() * 4


# -- adding a precision is one part plus register_precision --------------------------------------------

class Bf16Linear(QuantLinear):
    """Toy: weights rounded to bf16 once, float matmul."""

    def __init__(self, linear: nn.Linear, precision: str, kernel: str) -> None:
        super().__init__(linear, precision, kernel)
        self.register_buffer("weight_bf16", linear.weight.detach().to(torch.bfloat16))  # [out, in]

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        return x2 @ self.weight_bf16.to(x2.dtype).t()  # [M, out]


@dataclass(frozen=True)
class ToyBf16(Precision):
    name: str = "toy-bf16"
    flop_cost: float = 0.5

    def quantize_linear(self, linear: nn.Linear) -> nn.Module:
        return Bf16Linear(linear, self.name, self.kernel(linear.weight.device))

    def kernel(self, device: torch.device) -> str:
        return "simulated"

    def weight_bytes(self, linear: nn.Linear) -> int:
        return linear.weight.numel() * 2


@pytest.fixture
def toy_precision():
    part = register_precision(ToyBf16())
    try:
        yield part
    finally:
        unregister_precision(part.name)
    assert "toy-bf16" not in PRECISIONS


def test_a_new_precision_is_one_part_and_one_registration(toy_precision):
    assert PRECISIONS["toy-bf16"] is toy_precision and tuple(PRECISIONS)[-1] == "toy-bf16"
    linear = nn.Linear(32, 16).requires_grad_(False)
    copy = quant.quantize_block(nn.Sequential(linear), "toy-bf16")
    x = torch.randn(5, 3, 32)  # [..., in]
    with torch.no_grad():
        expected = x @ linear.weight.to(torch.bfloat16).float().t() + linear.bias  # [..., out]
        assert torch.equal(copy(x), expected)
    assert block_kernels(copy) == {"simulated"}
    assert toy_precision.weight_bytes(linear) == copy[0].weight_bytes()
    with pytest.raises(ValueError, match="already registered"):
        register_precision(ToyBf16())
    assert register_precision(ToyBf16(flop_cost=0.25), replace=True).flop_cost == 0.25


def test_register_precision_wants_a_part():
    with pytest.raises(TypeError):
        register_precision("int8")  # type: ignore[arg-type]


# -- the registry stays light -------------------------------------------------------------------------

def test_precision_modules_import_only_torch_and_the_standard_library():
    runtime = Path(quant.__file__).parent
    for path in [runtime / "quant.py", *sorted((runtime / "precisions").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= {"torch"} | set(sys.stdlib_module_names), (path.name, roots)
