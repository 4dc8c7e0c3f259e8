"""Deploy test fixtures: one renderer per session, so every kustomize target is built once."""

from __future__ import annotations

import pytest
from deploy_helpers import Renderer


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """``render(target)`` -> the rendered documents (cached for the session)."""
    return Renderer(tmp_path_factory.mktemp("kustomize-scenarios"))
