"""The ``command.run`` action: running the program, and turning an outcome into output or an error
(its parameters: :mod:`.schema`)."""

from __future__ import annotations

import os
from typing import Any

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

from .process import run_process
from .schema import DEFAULT_MAX_OUTPUT, SCHEMA  # noqa: F401 - SCHEMA: kept importable from here

_validator = None


def run_command(params: dict, ctx: ActionContext) -> dict:
    """Run a program in its own process group and return its exit code and output.

    Output keeps the last ``max_output`` bytes of stdout and of stderr; when more was written the
    text starts with ``[... N bytes truncated ...]`` and ``truncated`` is true.
    """
    _check(params)
    argv = list(params["argv"]) if "argv" in params else ["/bin/sh", "-c", params["shell"]]
    env = dict(os.environ) if params.get("inherit_env", True) else {}
    env.update(params.get("env") or {})
    cwd = params.get("cwd")
    if cwd is not None and not os.path.isdir(cwd):
        raise ActionError(f"working directory not found: {cwd!r}", retryable=False)
    limit, limit_is_task = _limit(params.get("timeout"), ctx.time_left())
    if ctx.cancelled.is_set():
        raise ActionError("command not started: the run was cancelled", retryable=False)
    if limit is not None and limit <= 0:
        raise ActionError("command not started: the task's time limit has passed", retryable=True)
    stdin = params.get("stdin")
    try:
        outcome = run_process(
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin.encode("utf-8") if stdin is not None else None,
            limit=limit,
            max_output=params.get("max_output", DEFAULT_MAX_OUTPUT),
            cancelled=ctx.cancelled,
        )
    except FileNotFoundError:
        raise ActionError(f"command not found: {argv[0]!r}", retryable=False) from None
    except PermissionError:
        raise ActionError(
            f"command not executable: {argv[0]!r} (permission denied)", retryable=False
        ) from None
    except (OSError, ValueError) as exc:
        raise ActionError(f"cannot start command {argv[0]!r}: {exc}", retryable=False) from None

    stderr = outcome.stderr.text()
    if outcome.killed_leftovers:
        stderr += ("\n[taskengine: the command exited but processes it started kept its output "
                   "open; they were killed]\n")
    output = {
        "exit_code": outcome.exit_code,
        "stdout": outcome.stdout.text(),
        "stderr": stderr,
        "truncated": bool(outcome.stdout.dropped or outcome.stderr.dropped),
        "duration": round(outcome.duration, 3),
    }
    if outcome.ended == "timeout":
        why = " (the task's time limit)" if limit_is_task else ""
        raise ActionError(
            f"command timed out after {_seconds(limit)}s{why}; process group killed",
            retryable=True, output=output,
        )
    if outcome.ended == "cancelled":
        raise ActionError("command cancelled; process group killed", retryable=False,
                          output=output)
    if outcome.exit_code not in params.get("ok_exit_codes", [0]):
        raise ActionError(f"command exited with code {outcome.exit_code}", retryable=True,
                          output=output)
    return output


def _check(params: Any) -> None:
    """The engine validates before calling; this keeps direct callers honest too."""
    global _validator
    if _validator is None:
        from jsonschema import Draft202012Validator

        _validator = Draft202012Validator(SCHEMA)
    errors = list(_validator.iter_errors(params))
    if not errors:
        return
    if isinstance(params, dict) and ("argv" in params) == ("shell" in params):
        raise ActionError("command.run: give exactly one of 'argv' or 'shell'", retryable=False)
    from jsonschema.exceptions import best_match

    error = best_match(errors)
    where = "/".join(str(p) for p in error.absolute_path) or "(parameters)"
    raise ActionError(f"command.run: {where}: {error.message}", retryable=False)


def _limit(timeout: float | None, time_left: float | None) -> tuple[float | None, bool]:
    """The smaller of the action's and the task's limits, and whether the task's won."""
    if time_left is not None and (timeout is None or time_left < timeout):
        return time_left, True
    return timeout, False


def _seconds(value: float | None) -> str:
    return str(round(float(value or 0.0), 2))
