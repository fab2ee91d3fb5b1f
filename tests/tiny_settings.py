"""Tiny constructor settings of every registered family member, for tests (a module of its own,
imported as ``from tiny_settings import ...``; tests/ is on pytest's path).

Adding a tabular encoder or a fusion is one class, one registry line and one entry here;
``test_every_member_has_tiny_settings`` fails until the entry exists.
"""

from __future__ import annotations

#: keyword arguments that keep each tabular encoder small (width 16)
TINY_ENCODERS = {
    "mlp": dict(d_block=16),
    "resnet": dict(d_block=16),
    "ft_transformer": dict(d_block=16, n_heads=4),
    "ft_mamba": dict(d_block=16, d_state=4),
}
#: settings that keep each fusion small
TINY_FUSIONS = {
    "concat": {},
    "cross_attention": dict(d_model=32, n_heads=4),
    "amf": dict(d_out=32),
}
#: values for the run inputs a fusion may declare (``run_inputs``)
RUN_INPUTS = {"r_conf": 0.95}


def fusion_kwargs(name: str, **dims) -> dict:
    """Constructor arguments of fusion ``name``: dims + its run inputs + its tiny settings."""
    from amfmedit.models import FUSIONS

    return {**dims, **{k: RUN_INPUTS[k] for k in FUSIONS[name].run_inputs}, **TINY_FUSIONS.get(name, {})}
