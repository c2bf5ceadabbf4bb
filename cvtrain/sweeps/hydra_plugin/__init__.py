"""Installed as `hydra_plugins.cvtrain_sweeper` (pyproject's package-dir): Hydra instantiates a
sweeper only from a module of the `hydra_plugins` namespace, which is why cvtrain's sweeper
lives here. The CLI registers it with Hydra for a multirun (an editable install hides it from
Hydra's scan), so nothing else in cvtrain imports this package, by either name.
"""
