"""The ``apt`` source: ``apt-get`` driven as a process (python-apt is not on PyPI).

``apt-get update --error-on=any`` refreshes the lists and, unlike plain ``apt-get update``,
fails when a repository is unreachable. ``apt-get -s upgrade`` (or ``dist-upgrade``) prints one
``Inst NAME [OLD] (NEW ...)`` line per package, its script-friendly output; ``apt-cache show
NAME=VERSION`` gives the sizes. Messages run under ``LC_ALL=C`` so that they can be told apart.
"""

from __future__ import annotations

import os
import re

from taskengine_command.process import run_process
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

from .pending import Pending

INST = re.compile(r"^Inst (?P<name>\S+) (?:\[(?P<old>[^\]]+)\] )?\((?P<new>\S+)[ )]", re.M)
MAX_OUTPUT = 4 * 1024 * 1024
DPKG_OPTIONS = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]

_LOCK = re.compile(r"Could not get lock (?P<path>\S+?)\.? It is held by process (?P<pid>\d+)"
                   r"(?: \((?P<name>[^)]*)\))?")
_LOCK_OTHER = re.compile(r"Unable to (?:acquire the dpkg frontend lock|lock directory|lock the "
                         r"administration directory) \(?(?P<path>[^\s),]+)")
_DENIED = re.compile(r"Could not open lock file (?P<path>\S+) - open \(13: Permission denied\)"
                     r"|are you root\?")
_SPACE = re.compile(r"You don't have enough free space in (?P<path>\S+?)\.?$"
                    r"|No space left on device", re.M)
_FETCH = re.compile(r"^[EW]: Failed to fetch (?P<url>\S+)\s+(?P<why>.*)$", re.M)
_ERROR = re.compile(r"^E: (.*)$", re.M)


class AptSource:
    name = "apt"

    def __init__(self, options: dict, ctx: ActionContext) -> None:
        self.options = options
        self.ctx = ctx
        self.verb = options.get("upgrade", "upgrade")

    @property
    def identity(self) -> dict:
        return {"config": self.options.get("config"), "upgrade": self.verb}

    def refresh(self) -> None:
        self._apt_get(["update", "--error-on=any"])

    def pending(self) -> list[Pending]:
        out = self._apt_get(["-s", self.verb])
        found = [(m["name"], m["old"], m["new"]) for m in INST.finditer(out)]
        sizes = self._sizes([(name, new) for name, _, new in found])
        return [Pending(name, old, new, sizes.get((name, new))) for name, old, new in found]

    def download(self, pending: list[Pending]) -> None:
        self._apt_get(["--download-only", "-y", self.verb])

    def install(self, pending: list[Pending]) -> None:
        self._apt_get([*DPKG_OPTIONS, "-y", self.verb])

    # -- running apt -------------------------------------------------------------------------

    def _sizes(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        if not wanted:
            return {}
        out = self._run("apt-cache", ["show", *(f"{name}={version}" for name, version in wanted)],
                        ok_codes=(0, 100))  # 100: a version vanished meanwhile; sizes stay unknown
        sizes = {}
        for record in out.split("\n\n"):
            fields = dict(re.findall(r"^(Package|Version|Size): (.*)$", record, re.M))
            if "Size" in fields and fields["Size"].isdigit():
                sizes[(fields.get("Package"), fields.get("Version"))] = int(fields["Size"])
        return sizes

    def _apt_get(self, args: list[str]) -> str:
        return self._run("apt-get", ["-q", *args])

    def _run(self, program: str, args: list[str], ok_codes=(0,)) -> str:
        env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        if self.options.get("config"):
            config = self.options["config"]
            if not os.path.isfile(config):
                raise ActionError(f"apt: the configuration file {config!r} does not exist "
                                  "(settings.updates.apt.config)", retryable=False)
            env["APT_CONFIG"] = config
        if self.ctx.cancelled.is_set():
            raise ActionError("apt: not started, the run was cancelled", retryable=False)
        argv = [program, *args]
        try:
            outcome = run_process(argv, env=env, cwd=None, stdin=None, limit=self.ctx.time_left(),
                                  max_output=MAX_OUTPUT, cancelled=self.ctx.cancelled)
        except FileNotFoundError:
            raise ActionError(f"apt: {program} not found: the apt source needs a Debian or "
                              "Ubuntu system", retryable=False) from None
        command = " ".join(argv)
        out, err = outcome.stdout.text(), outcome.stderr.text()
        if outcome.ended == "timeout":
            raise ActionError(f"apt: {command} timed out (the task's time limit); it was "
                              "stopped", retryable=True, output={"stderr": err[-4000:]})
        if outcome.ended == "cancelled":
            raise ActionError(f"apt: {command} was cancelled", retryable=False)
        if outcome.exit_code not in ok_codes:
            raise failure(command, outcome.exit_code, out + "\n" + err)
        return out


def failure(command: str, code: int, text: str) -> ActionError:
    """The most specific cause apt's messages name: a held lock, no space, an unreachable
    repository, missing privileges; else apt's own last error line."""
    output = {"exit_code": code, "messages": _ERROR.findall(text)[-20:]}
    if _DENIED.search(text):  # before the lock patterns: a lock it may not open is not "held"
        return ActionError(f"apt: permission denied running {command}: apt needs root "
                           "(docs/operations.md, 'What the examples need')", retryable=False,
                           output=output)
    if m := _LOCK.search(text):
        holder = f"process {m['pid']}" + (f" ({m['name']})" if m["name"] else "")
        return ActionError(f"apt: the lock {m['path']} is held by {holder}: another apt or dpkg "
                           "is running; the task's retry policy tries again", retryable=True,
                           output=output)
    if m := _LOCK_OTHER.search(text):
        return ActionError(f"apt: cannot take the lock {m['path']}: another apt or dpkg is "
                           "running; the task's retry policy tries again", retryable=True,
                           output=output)
    if m := _SPACE.search(text):
        where = f" in {m['path']}" if m["path"] else ""
        return ActionError(f"apt: no space left{where}: free space there, then run the task "
                           "again", retryable=False, output=output)
    if m := _FETCH.search(text):
        return ActionError(f"apt: repository unreachable: {m['url']}: {m['why'].strip()}; "
                           "the package lists were not refreshed", retryable=True, output=output)
    errors = _ERROR.findall(text)
    lines = [line for line in text.splitlines() if line.strip()]
    last = errors[-1] if errors else (lines[-1] if lines else "no message")
    return ActionError(f"apt: {command} exited with code {code}: {last}", retryable=False,
                       output=output)
