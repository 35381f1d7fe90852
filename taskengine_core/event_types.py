"""What an event's type may look like: used by the event schema (:mod:`taskengine_core.events`)
and by plugins' settings schemas (logwatch rules name the events they emit), which every CLI
start builds without needing the event machinery."""

TYPE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$(?!\n)"  # (?!\n): Python's $ also matches before a final newline
