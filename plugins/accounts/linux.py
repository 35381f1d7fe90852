"""The ``linux`` backend: shadow-utils' ``usermod`` on the passwd and shadow files under a
root directory (``/``: this machine; anything else: ``usermod --root DIR``, a chroot or an
image). Changing accounts needs root; reading ``etc/shadow`` does too.

Disabled means locked *and* expired: ``--lock`` puts ``!`` before the password hash, which stops
password logins only; ``--expiredate 1`` (1970-01-02) makes PAM refuse every login to the
account, SSH keys included.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from taskengine_core.errors import ActionError

RETRYABLE_EXIT = (1, 10)  # usermod: cannot lock or update the files (another tool holds them)


@dataclass
class Account:
    name: str
    uid: int
    password: str  # the shadow password field
    expire: str  # days since 1970-01-01, or ''

    @property
    def locked(self) -> bool:
        return self.password.startswith("!")

    @property
    def hash_locked(self) -> bool:
        """A real password hash behind the ``!`` (a bare ``!`` or ``!!`` means no password)."""
        return self.locked and self.password.lstrip("!") not in ("", "*")

    @property
    def expired(self) -> bool:
        return self.expire.isdigit() and int(self.expire) <= int(time.time() // 86400)

    def state(self) -> dict:
        return {"uid": self.uid, "locked": self.locked, "expired": self.expired,
                "enabled": not self.expired and not self.hash_locked}


class LinuxAccounts:
    def __init__(self, settings: dict) -> None:
        self.root = os.path.abspath(settings.get("root") or "/")
        self.usermod = settings.get("usermod") or "usermod"

    def describe(self) -> str:
        return "this machine" if self.root == "/" else self.root

    def read(self, name: str) -> Account:
        passwd = self._row(os.path.join(self.root, "etc/passwd"), name)
        if passwd is None:
            raise ActionError(f"no user {name!r} in {os.path.join(self.root, 'etc/passwd')}",
                              retryable=False)
        shadow = self._row(os.path.join(self.root, "etc/shadow"), name) or []
        uid = int(passwd[2]) if len(passwd) > 2 and passwd[2].isdigit() else -1
        return Account(name, uid, shadow[1] if len(shadow) > 1 else "",
                       shadow[7] if len(shadow) > 7 else "")

    def is_system(self, account: Account) -> bool:
        return account.name == "root" or account.uid < 1000

    def change(self, account: Account, enabled: bool, time_left: float | None) -> Account:
        if enabled:
            options = ["--expiredate", ""]
            if account.hash_locked:
                options = ["--unlock", *options]
        else:
            options = ["--lock", "--expiredate", "1"]
        args = [self.usermod]
        if self.root != "/":
            args += ["--root", self.root]
        args += [*options, "--", account.name]  # "--": the name can never read as an option
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=time_left or 60)
        except FileNotFoundError:
            raise ActionError(f"{self.usermod} not found: install shadow-utils (Debian: passwd) or "
                              "set settings.user.usermod", retryable=False) from None
        except subprocess.TimeoutExpired:
            raise ActionError(f"usermod did not finish in time for {account.name!r}") from None
        if done.returncode != 0:
            hint = "; changing accounts needs root" if os.geteuid() != 0 else ""
            raise ActionError(f"usermod {' '.join(options) or ''} {account.name!r} failed (exit "
                              f"{done.returncode}): {done.stderr.strip()}{hint}",
                              retryable=done.returncode in RETRYABLE_EXIT)
        return self.read(account.name)

    def _row(self, path: str, name: str) -> list[str] | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.rstrip("\n").split(":")
                    if fields[0] == name:
                        return fields
        except PermissionError:
            raise ActionError(f"cannot read {path}: permission denied; the linux backend of user.* "
                              "actions needs root (run the engine as root)", retryable=False) from None
        except FileNotFoundError:
            raise ActionError(f"{path} does not exist; check settings.user.root ({self.root})",
                              retryable=False) from None
        return None
