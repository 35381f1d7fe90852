"""taskengine: tasks fired by schedules and events, every decision recorded in SQLite."""

__version__ = "0.1.0"
# the name on PyPI ("taskengine" there is another project); the command stays "taskengine"
DISTRIBUTION = "taskengine-core"
