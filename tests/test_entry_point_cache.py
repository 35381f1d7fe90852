"""The entry-point cache: plugins found without importing importlib.metadata, and every
install, removal or change of a distribution seen at once."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskengine_core import cache_dir, entry_point_cache
from taskengine_core.entry_point_cache import FoundEntryPoint, entry_points
from taskengine_core.plugins import PluginLoadWarning, get_plugin_manager

FIXTURES = Path(__file__).parent / "fixtures"
GROUP = "taskengine"


def pip_install(folder: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(folder)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The example and the broken plugin, each installed with pip once into a folder of its own."""
    root = tmp_path_factory.mktemp("built")
    for name in ("example_plugin", "broken_plugin"):
        pip_install(FIXTURES / name, root / name)
    return root


@pytest.fixture
def site(tmp_path, built, monkeypatch) -> Path:
    """A folder on sys.path holding the example plugin; the cache is saved even for files
    changed just now (the tests change them within a second)."""
    target = tmp_path / "site"
    shutil.copytree(built / "example_plugin", target)
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.setattr(entry_point_cache, "RACY_SECONDS", -3600.0)
    yield target
    for name in [m for m in sys.modules if m.startswith(("taskengine_example", "taskengine_broken"))]:
        del sys.modules[name]


def from_metadata() -> list[FoundEntryPoint]:
    return [FoundEntryPoint(ep.name, ep.value, ep.dist.name, ep.dist.version)
            for ep in importlib.metadata.entry_points(group=GROUP)]


def cache_file() -> Path:
    return cache_dir.cache_path(entry_point_cache.CACHE_FILE)


def names(found) -> list[str]:
    return [ep.name for ep in found]


def metadata_forbidden(monkeypatch):
    def refuse(**_):
        raise AssertionError("the package metadata was scanned although the cache holds")

    monkeypatch.setattr(importlib.metadata, "entry_points", refuse)


def test_the_second_call_reads_the_cache_not_the_metadata(site, monkeypatch):
    first = entry_points(GROUP)
    assert first == from_metadata()
    assert ("example", "taskengine-example", "1.2.3") in [(e.name, e.distribution, e.version) for e in first]
    assert cache_file().is_file()
    metadata_forbidden(monkeypatch)
    assert entry_points(GROUP) == first
    assert "example" in get_plugin_manager().info


def test_a_plugin_installed_after_the_cache_was_written_is_loaded(site, built, monkeypatch):
    assert "broken" not in names(entry_points(GROUP))
    shutil.copytree(built / "broken_plugin", site, dirs_exist_ok=True)  # what pip install --target does
    assert "broken" in names(entry_points(GROUP))
    with pytest.warns(PluginLoadWarning, match="taskengine-broken"):
        manager = get_plugin_manager()
    assert [b.distribution for b in manager.broken] == ["taskengine-broken"]


def test_a_plugin_installed_with_pip_into_a_cached_folder_is_seen(site):
    assert "broken" not in names(entry_points(GROUP))
    pip_install(FIXTURES / "broken_plugin", site)
    found = entry_points(GROUP)
    assert "broken" in names(found) and found == from_metadata()


def test_a_removed_plugin_is_no_longer_loaded(site):
    assert "example" in names(entry_points(GROUP))
    for info in site.glob("taskengine_example-*.dist-info"):
        shutil.rmtree(info)
    shutil.rmtree(site / "taskengine_example")
    assert "example" not in names(entry_points(GROUP))
    assert "example" not in get_plugin_manager().info


def test_entry_points_rewritten_in_place_are_seen(site):
    """An editable install rewrites entry_points.txt in its existing metadata folder."""
    assert names(entry_points(GROUP)).count("example") == 1
    (text_file,) = site.glob("taskengine_example-*.dist-info/entry_points.txt")
    text_file.write_text(text_file.read_text() + "example_again = taskengine_example\n")
    assert "example_again" in names(entry_points(GROUP))


def test_a_new_version_in_place_is_seen(site):
    (metadata,) = site.glob("taskengine_example-*.dist-info/METADATA")
    entry_points(GROUP)
    metadata.write_text(metadata.read_text().replace("Version: 1.2.3", "Version: 1.2.40"))
    assert [e.version for e in entry_points(GROUP) if e.name == "example"] == ["1.2.40"]


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"fingerprint": 1}', "", None])
def test_a_damaged_cache_is_scanned_again_and_rewritten(site, damage):
    expected = entry_points(GROUP)
    path = cache_file()
    if damage is None:  # the right fingerprint, rows of the wrong shape
        data = json.loads(path.read_text())
        data["groups"][GROUP] = [[1, 2]]
        damage = json.dumps(data)
    path.write_text(damage)
    assert entry_points(GROUP) == expected
    assert json.loads(path.read_text())["groups"][GROUP] == [[e.name, e.value, e.distribution, e.version]
                                                            for e in expected]


def test_metadata_changed_just_now_is_not_cached(tmp_path, built, monkeypatch):
    """A file system's clock is coarse: a second change within the same tick would keep the
    time the fingerprint saw, so a fingerprint that fresh is not saved."""
    target = tmp_path / "fresh"
    shutil.copytree(built / "example_plugin", target)
    monkeypatch.syspath_prepend(str(target))
    found = entry_points(GROUP)
    assert "example" in names(found)
    assert not cache_file().exists()


def test_no_cache_when_another_finder_supplies_distributions(site, monkeypatch):
    class Finder:
        @staticmethod
        def find_spec(*_args, **_kwargs):
            return None

        @staticmethod
        def find_distributions(*_args, **_kwargs):
            return iter(())

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert entry_points(GROUP) == from_metadata()
    assert not cache_file().exists()


@pytest.mark.parametrize("value, expected", [
    ("json", "json"), ("json:dumps", "dumps"), ("os.path : join", "join"),
    ("json:JSONDecoder.decode [extra]", "decode")])
def test_load_imports_what_entry_point_load_does(value, expected):
    ep = FoundEntryPoint("x", value, "d", "1")
    assert ep.load() is importlib.metadata.EntryPoint("x", value, GROUP).load()
    assert getattr(ep.load(), "__name__", None) == expected


def test_load_of_a_malformed_value_fails_as_entry_point_load_does():
    with pytest.raises(Exception) as ours:
        FoundEntryPoint("x", "not a module!", "d", "1").load()
    with pytest.raises(Exception) as theirs:
        importlib.metadata.EntryPoint("x", "not a module!", GROUP).load()
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_no_cache_when_sys_path_holds_something_other_than_text(site, monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, Path(site)])
    assert entry_points(GROUP) == from_metadata()
    assert not cache_file().exists()


def test_a_deleted_working_directory_on_sys_path_is_no_error(site, tmp_path, monkeypatch):
    """``""`` on sys.path (``python -c``, an embedding program) stands for the working
    directory; when that directory was deleted, importlib.metadata finds nothing in it, and so
    must the cache, instead of failing with FileNotFoundError."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    assert entry_points(GROUP) == from_metadata()
    assert "example" in get_plugin_manager().info
    metadata_forbidden(monkeypatch)
    assert "example" in names(entry_points(GROUP))  # and the cache is used all the same


def test_a_cache_damaged_beyond_what_json_parses_is_scanned_again(site):
    expected = entry_points(GROUP)
    cache_file().write_text("[" * 100_000)  # json.loads raises RecursionError, not ValueError
    assert entry_points(GROUP) == expected
    assert json.loads(cache_file().read_text())["groups"][GROUP]
