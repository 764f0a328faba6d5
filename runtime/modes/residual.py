"""Residual reuse (FORA, Delta-DiT): output = input + the residual (output - input) of the last compute."""

from .base import ReuseMode

RESIDUAL = ReuseMode(
    name="residual",
    history=1,
    summary="input + cached (output - input) of the last compute",
)
