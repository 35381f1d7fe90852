"""The file follower on real files: rotation, truncation, partial lines, restarts.

Each test drives a :class:`Follower` the way the source does: read, handle the lines, commit
the position; a "restart" builds a new follower from the last committed position (as stored).
"""

from __future__ import annotations

import os
import time

from taskengine_logwatch.follower import Follower, Position


class Reader:
    """A follower plus everything it has handed out, with restarts from the stored position."""

    def __init__(self, path, **kwargs):
        self.path, self.kwargs = str(path), kwargs
        self.stored: dict | None = None
        self.seen: list[tuple[str, str]] = []  # (id, text)
        self.follower = Follower(self.path, None, **kwargs)

    def poll(self, times: int = 3, pause: float = 0.0) -> list[str]:
        got = []
        for _ in range(times):
            time.sleep(pause)
            lines, pos = self.follower.read()
            got += [line.text for line in lines]
            self.seen += [(self.follower.line_id(line), line.text) for line in lines]
            if pos is not None:
                self.stored = pos.as_state()
                self.follower.commit(pos)
        return got

    def restart(self):
        self.follower.close()
        self.follower = Follower(self.path, Position.from_state(self.stored), **self.kwargs)

    def texts(self):
        return [t for _, t in self.seen]


def append(path, text: str | bytes):
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def test_first_start_begins_at_the_end_unless_from_start(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("old 1\nold 2\n")
    r = Reader(log)
    assert r.poll() == []
    append(log, "new 1\n")
    assert r.poll() == ["new 1"]
    s = Reader(log, from_start=True)
    assert s.poll() == ["old 1", "old 2", "new 1"]


def test_a_partial_last_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, "Accepted publickey for al")
    assert r.poll() == []
    r.restart()  # even across a restart
    append(log, "ice from 127.0.0.1 port 1 ssh2\nnext")
    assert r.poll() == ["Accepted publickey for alice from 127.0.0.1 port 1 ssh2"]
    append(log, "\n")
    assert r.poll() == ["next"]


def test_a_file_that_does_not_exist_yet_is_read_from_its_start(tmp_path):
    log = tmp_path / "later.log"
    r = Reader(log)
    assert r.poll() == []
    r.restart()  # the "read it from the start" decision is stored
    log.write_text("first\nsecond\n")
    assert r.poll() == ["first", "second"]


def test_rename_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, "a1\na2\n")
    assert r.poll() == ["a1", "a2"]
    append(log, "a3\n")  # written before the rotation, not read yet
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("b1\n")
    append(tmp_path / "auth.log.1", "a4\n")  # the writer had not reopened yet
    r.poll(6, pause=0.1)
    assert r.texts() == ["a1", "a2", "a3", "a4", "b1"]


def test_rotation_while_stopped_is_picked_up_after_a_restart(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, "a1\n")
    r.poll()
    r.restart()
    append(log, "a2\n")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("b1\n")
    r.restart()
    r.poll(6, pause=0.1)
    assert r.texts() == ["a1", "a2", "b1"]


def test_an_unterminated_last_line_of_a_rotated_file_is_read_once_it_settles(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, "a1\nunterminated")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("b1\n")
    r.poll(6, pause=0.1)
    assert r.texts() == ["a1", "unterminated", "b1"]


def test_copytruncate_reads_the_lines_the_copy_caught_then_the_file_again(tmp_path):
    log = tmp_path / "sync.log"
    log.write_text("x0\n")
    r = Reader(log)
    r.poll()
    append(log, "x1\n")
    r.poll()
    append(log, "x2\n")  # written after our last read, before logrotate copied the file
    (tmp_path / "sync.log.1").write_bytes(log.read_bytes())
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "y1\n")
    r.poll(6, pause=0.1)
    assert r.texts() == ["x1", "x2", "y1"]


def test_truncation_in_place_starts_again_with_new_ids(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, "first line\n")
    r.poll()
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "other line\n")  # same offset as "first line": a different id all the same
    r.poll()
    assert r.texts() == ["first line", "other line"]
    ids = [i for i, _ in r.seen]
    assert len(set(ids)) == 2


def test_a_file_rewritten_past_the_old_offset_is_noticed_by_its_head(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, "one\n")
    r.poll()
    log.write_text("a completely different first line\nand a second\n")  # truncate + rewrite
    r.poll()
    assert r.texts() == ["one", "a completely different first line", "and a second"]


def test_a_replay_after_a_lost_commit_gives_the_same_ids(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    before = dict(r.stored)
    append(log, "l1\nl2\n")
    lines, _ = r.follower.read()  # handled, but the position was never stored (a crash)
    first = [(r.follower.line_id(line), line.text) for line in lines]
    replay = Follower(str(log), Position.from_state(before))
    lines, _ = replay.read()
    assert [(replay.line_id(line), line.text) for line in lines] == first


def test_long_lines_are_cut_and_counted(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    r = Reader(log, max_line=300)
    r.poll()
    append(log, "x" * 1000 + "\nshort\n")
    follower_lines, pos = r.follower.read()
    assert [len(line.text) for line in follower_lines] == [300, 5]
    assert [line.cut for line in follower_lines] == [True, False]
    assert pos.cut == 1


def test_an_endless_line_without_newline_is_cut_without_waiting_and_its_rest_dropped(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    r = Reader(log, max_line=300)
    r.poll()
    append(log, "y" * 500)
    assert [len(t) for t in r.poll()] == [300]
    append(log, "y" * 500 + "\nafter\n")
    assert r.poll() == ["after"]


def test_invalid_utf8_and_crlf_become_text(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    r = Reader(log)
    r.poll()
    append(log, b"caf\xe9\r\n")
    assert r.poll() == ["caf\ufffd"]
