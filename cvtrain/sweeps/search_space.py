"""Hydra's sweep syntax as an Optuna search space.

`choice(a, b)` is categorical, `range(1, 5)` the integers 1..4 (a float range its values),
`interval(lo, hi)` uniform and `tag(log, interval(lo, hi))` log-uniform; a plain value fixes the
key for every trial (a key set on the command line overrides the preset's search).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from cvtrain.errors import ConfigError


def parse(arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """(distributions of the searched keys, values of the fixed ones); a later argument for the
    same key wins, as on Hydra's command line."""
    searched: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        searched.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            searched[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return searched, fixed


def distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    integers = all(type(v) is int for v in values)
    if override.is_range_sweep() and integers and not value.shuffle and len(values) > 1:
        return IntDistribution(values[0], values[-1], step=values[1] - values[0])
    return CategoricalDistribution(values)


def grid(searched: dict[str, BaseDistribution]) -> dict[str, list]:
    """Every value of each key, for Optuna's grid sampler (intervals have none to list)."""
    values = {}
    for key, dist in searched.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            values[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ConfigError(
                f"hydra.sweeper.params: {key} is an interval; the grid sampler needs choice() or "
                "range() for every key"
            )
    return values
