"""Downstream heads that consume slot trajectories (dynamics, question answering, property probes).

Heads are components of the ``heads`` kind (contract: :class:`plugins.interfaces.Head`). The package ships
none yet, so the ``heads`` kind of the registry is empty. Heads added here are to register through a module
listed in :data:`plugins.builtin.DEFAULT_PLUGINS`, as built-ins, so that a third-party head cannot take their
names.
"""

__all__: list[str] = []
