"""The warning for a plugin left out says how to fix it (install the missing dependency, fix the import, rename the
component), and offers blocking it only as a way to skip it: blocking silences the warning, it fixes nothing."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest

from plugins import build_plugin_manager
from plugins.manager import BLOCK_ENV_VAR, PluginWarning


def _plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> None:
    """Write the plugin module ``module`` onto ``sys.path`` and make it the one installed plugin (entry point
    ``module``)."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    entry_point = importlib.metadata.EntryPoint(name=module, value=module, group="slotstream")
    monkeypatch.setattr("plugins.manager._entry_points", lambda: [entry_point])


def _advice(module: str) -> str:
    with pytest.warns(PluginWarning, match="was left out") as warned:
        build_plugin_manager()
    sys.modules.pop(module, None)
    (warning,) = [w for w in warned if issubclass(w.category, PluginWarning)]
    return str(warning.message).split(". To fix: ")[1]


@pytest.mark.parametrize(
    ("source", "fix"),
    [
        (
            "import slotstream_test_absent_dependency\n",
            "install the missing dependency (the distribution that provides the module "
            "'slotstream_test_absent_dependency')",
        ),
        (
            "from slotstream_test_fixadvice.helpers import VALUE\n",
            "fix the plugin's import of 'slotstream_test_fixadvice.helpers'",
        ),
        (
            """
            from plugins import hookimpl
            from plugins.builtin.transitions.identity import IdentityTransition


            @hookimpl
            def slotstream_register_components(registry):
                registry.add_transition(IdentityTransition)  # a name the built-in plugin holds
            """,
            "rename the component whose name is taken",
        ),
        (
            """
            from plugins import Decoder, hookimpl


            class NoTargetKind(Decoder):
                name = "no_target_kind"


            @hookimpl
            def slotstream_register_components(registry):
                registry.add_decoder(NoTargetKind)
            """,
            "change the registration as the error says, or",
        ),
        ("VALUE = 1 / 0\n", "fix the error above in the plugin"),
    ],
    ids=["missing_dependency", "own_module_missing", "name_clash", "refused_class", "other_error"],
)
def test_the_warning_says_how_to_fix_the_plugin_before_how_to_skip_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, fix: str
) -> None:
    module = "slotstream_test_fixadvice"
    _plugin(tmp_path, monkeypatch, module, source)
    advice = _advice(module)
    assert advice.startswith(fix), advice
    assert advice.endswith(f", or set {BLOCK_ENV_VAR}={module} to skip the plugin without this warning")


@pytest.mark.parametrize(
    ("source", "fix"),
    [
        (
            """
            from plugins import hookimpl


            @hookimpl
            def slotstream_register_component(registry):
                pass
            """,
            "rename the function 'slotstream_register_component' to 'slotstream_register_components' or drop its "
            "@hookimpl marker (the hooks are slotstream_register_components(registry))",
        ),
        (
            """
            from plugins import hookimpl


            @hookimpl
            def slotstream_register_components(regstry):
                pass
            """,
            "declare only arguments of the hook's spec, slotstream_register_components(registry), by those names",
        ),
    ],
    ids=["misspelt_hook_name", "misspelt_hook_argument"],
)
def test_a_misspelt_hook_gets_the_name_the_spec_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, fix: str
) -> None:
    module = "slotstream_test_hookadvice"
    _plugin(tmp_path, monkeypatch, module, source)
    advice = _advice(module)
    assert advice.startswith(fix), advice
