"""Downstream heads that consume slot trajectories (dynamics, question answering, property probes).

Heads are components of the ``heads`` kind (contract: :class:`plugins.interfaces.Head`). The package ships
none yet, so the ``heads`` kind of the registry is empty; heads added here will reach the registry through
the ``slotstream`` entry-point group like any third-party plugin.
"""
