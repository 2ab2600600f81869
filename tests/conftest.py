"""Test-wide JAX settings.

Rank promotion raises, so an accidental broadcast ([N] against [N, 1], or [B, D] against
[D]) fails loudly instead of silently producing a matrix; write `x[None, :]` where a
broadcast is meant.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
