"""Downstream heads that consume slot trajectories (dynamics, question answering, property probes).

Heads are components of the ``heads`` kind; they reach the registry through the ``slotstream`` entry-point
group like any third-party plugin.
"""
