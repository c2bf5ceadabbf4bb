"""The one registry idea: a table names its entries' code as "module:attribute" strings.

Tables of models, data sources, modes and export formats stay importable without TensorFlow,
so config validation reads them before anything heavy loads; `resolve` imports an entry's
code only when it is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


def resolve(target: str) -> Any:
    """The attribute a "module:attribute" target names, importing its module on first use."""
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)
