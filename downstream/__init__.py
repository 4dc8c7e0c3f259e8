"""Downstream heads that consume slot trajectories (dynamics, question answering, property probes).

Heads are components of the ``heads`` kind (contract: :class:`plugins.interfaces.Head`), registered through
:mod:`downstream.heads`, a module of :data:`plugins.builtin.DEFAULT_PLUGINS`, as built-ins, so that a third-party
head cannot take their names. The package ships three:

- ``slotformer`` (:mod:`downstream.slotformer`), SlotFormer's dynamics model, trained and scored on trajectory
  files by :mod:`downstream.dynamics`;
- ``property_probe`` (:mod:`downstream.property_probe`), read-outs of object properties from slots, trained and
  scored on a model's slots matched to synthetic objects by :mod:`downstream.probes`;
- ``aloe`` (:mod:`downstream.aloe`), Aloe's question answering on slots, trained and scored on questions about
  synthetic videos by :mod:`downstream.vqa`.

Trained heads are kept in folders of one layout (:mod:`downstream.head_folder`).
"""

__all__: list[str] = []
