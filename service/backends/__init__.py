"""Inference backends behind :class:`service.engine.Engine`; each module defines ``load_engine``."""
