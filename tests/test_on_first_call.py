"""``on_first_call``: a plugin registers a function whose module is imported only when it runs."""

from __future__ import annotations

import sys

import pytest

from taskengine_core.on_first_call import on_first_call


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("lazy_probe")]:
        del sys.modules[name]


def test_the_module_is_imported_on_the_first_call_only(module_dir):
    (module_dir / "lazy_probe.py").write_text("IMPORTS = []\nIMPORTS.append(1)\n"
                                              "def run(params, ctx=None):\n    return {'got': params}\n")
    run = on_first_call("lazy_probe", "run", "Run the probe.")
    assert "lazy_probe" not in sys.modules
    assert (run.__name__, run.__doc__) == ("run", "Run the probe.")
    assert run({"a": 1}) == {"got": {"a": 1}}
    assert run({"a": 2}, ctx="c") == {"got": {"a": 2}}
    assert sys.modules["lazy_probe"].IMPORTS == [1]


def test_a_module_that_cannot_be_imported_fails_the_call_with_its_error(module_dir):
    (module_dir / "lazy_probe_broken.py").write_text("raise ImportError('libvirt is not installed')\n")
    run = on_first_call("lazy_probe_broken", "run")
    with pytest.raises(ImportError, match="libvirt is not installed"):
        run({})
    with pytest.raises(ImportError, match="libvirt is not installed"):
        run({})  # every call, not only the first
