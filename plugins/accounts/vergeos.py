"""The ``vergeos`` backend: a user's ``enabled`` flag through the VergeOS API v4.

``GET /api/v4/users?filter=name eq '<name>'`` finds the user's key and state;
``PUT /api/v4/users/{key}`` with ``{"enabled": false}`` changes it, and a second ``GET``
confirms it. The name was checked first (:mod:`.names`), so it cannot break out of the quotes.
Auth: ``Authorization: Bearer <API key>`` (``token``) or Basic (``username``/``password``),
over HTTPS unless ``allow_insecure`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from taskengine_core.errors import ActionError

SYSTEM_NAMES = ("admin", "root")
FIELDS = "$key,name,enabled"


@dataclass
class Account:
    name: str
    key: int
    enabled: bool

    def state(self) -> dict:
        return {"key": self.key, "enabled": self.enabled}


class VergeOSAccounts:
    def __init__(self, settings: dict) -> None:
        conf = settings.get("vergeos")
        if not conf:
            raise ActionError("the vergeos backend needs settings.user.vergeos with at least 'url'",
                              retryable=False)
        self.url = conf["url"].rstrip("/")
        if urlsplit(self.url).scheme != "https" and not conf.get("allow_insecure"):
            raise ActionError(f"settings.user.vergeos.url {self.url} is not https; the API key would "
                              "travel in clear text (set allow_insecure: true to accept that)", retryable=False)
        self.timeout = float(conf.get("timeout") or 30)
        self.verify = conf.get("ca_file") or conf.get("verify_tls", True)
        self.headers = {"Accept": "application/json"}
        self.auth = None
        if conf.get("token"):
            self.headers["Authorization"] = f"Bearer {conf['token']}"
        elif conf.get("username"):
            self.auth = (conf["username"], conf.get("password") or "")

    def describe(self) -> str:
        return self.url

    def read(self, name: str) -> Account:
        found = self._call("GET", "/api/v4/users", params={"filter": f"name eq '{name}'", "fields": FIELDS})
        rows = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
        rows = [r for r in rows if isinstance(r, dict) and r.get("name") == name]
        if not rows:
            raise ActionError(f"no user {name!r} on {self.url}", retryable=False)
        return _account(rows[0])

    def is_system(self, account: Account) -> bool:
        return account.name in SYSTEM_NAMES or account.key == 1

    def change(self, account: Account, enabled: bool, time_left: float | None) -> Account:
        self._call("PUT", f"/api/v4/users/{account.key}", json={"enabled": enabled}, time_left=time_left)
        return _account(self._call("GET", f"/api/v4/users/{account.key}", params={"fields": FIELDS}))

    def _call(self, method: str, path: str, *, time_left: float | None = None, **kwargs):
        import requests

        timeout = min(self.timeout, time_left) if time_left else self.timeout
        try:
            response = requests.request(method, self.url + path, headers=self.headers, auth=self.auth,
                                        timeout=timeout, verify=self.verify, allow_redirects=False,
                                        **kwargs)
        except requests.RequestException as exc:
            raise ActionError(f"VergeOS API {method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403):
            raise ActionError(f"VergeOS API {method} {path}: {response.status_code}; check the API key "
                              "or credentials in settings.user.vergeos and their permissions", retryable=False)
        if response.status_code >= 300:
            retry = response.status_code in (408, 429) or response.status_code >= 500
            raise ActionError(f"VergeOS API {method} {path}: {response.status_code} "
                              f"{response.text[:200].strip()}", retryable=retry)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise ActionError(f"VergeOS API {method} {path}: the answer is not JSON") from None


def _account(row) -> Account:
    if not isinstance(row, dict) or "$key" not in row or "enabled" not in row:
        raise ActionError(f"VergeOS API: unexpected user record {str(row)[:200]}")
    return Account(str(row.get("name", "")), int(row["$key"]), bool(row["enabled"]))
