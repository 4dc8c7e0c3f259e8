"""Training, evaluation and export of slotstream models."""
