"""Reading the shipped examples as the engine does. The examples keep their settings in
examples/settings.yaml (settings are defined once across a folder): a scenario test takes the
sections it needs from there and changes only where things are."""

from __future__ import annotations

from pathlib import Path

from taskengine_core.rules.loader import load_document

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_shipped(path: Path) -> dict:
    """A shipped rule file as the engine reads it (YAML 1.2: ``on:`` is a key, not True)."""
    doc, problems = load_document(path)
    assert not problems, problems
    return doc.data


def shipped_settings(*sections: str) -> dict:
    """These sections of examples/settings.yaml, as shipped."""
    settings = load_shipped(EXAMPLES / "settings.yaml")["settings"]
    return {name: settings[name] for name in sections}
