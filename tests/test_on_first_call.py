"""``on_first_call``: a plugin registers a function whose module is imported only when it runs."""

from __future__ import annotations

import sys

import pytest

from taskengine_core.on_first_call import on_first_call


def probe_module(tmp_path, monkeypatch, text: str) -> str:
    """A module of this test's own (a name no other test imports), importable from ``tmp_path``."""
    name = "lazy_probe_" + tmp_path.name
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_the_module_is_imported_on_the_first_call_only(tmp_path, monkeypatch):
    name = probe_module(tmp_path, monkeypatch, "IMPORTS = []\nIMPORTS.append(1)\n"
                                               "def run(params, ctx=None):\n    return {'got': params}\n")
    run = on_first_call(name, "run", "Run the probe.")
    assert name not in sys.modules
    assert (run.__name__, run.__doc__) == ("run", "Run the probe.")
    assert run({"a": 1}) == {"got": {"a": 1}}
    assert run({"a": 2}, ctx="c") == {"got": {"a": 2}}
    assert sys.modules[name].IMPORTS == [1]


def test_a_module_that_cannot_be_imported_fails_the_call_with_its_error(tmp_path, monkeypatch):
    name = probe_module(tmp_path, monkeypatch, "raise ImportError('libvirt is not installed')\n")
    run = on_first_call(name, "run")
    with pytest.raises(ImportError, match="libvirt is not installed"):
        run({})
    with pytest.raises(ImportError, match="libvirt is not installed"):
        run({})  # every call, not only the first
