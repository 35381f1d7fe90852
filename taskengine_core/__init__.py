"""taskengine: tasks fired by schedules and events, every decision recorded in SQLite."""

__version__ = "0.1.0"
