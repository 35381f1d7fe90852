"""``python -m taskengine_core`` runs the CLI, like the ``taskengine`` command."""

from taskengine_core.cli import main

main()
