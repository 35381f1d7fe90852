"""The ``vergeos`` source: VergeOS's update API (v4).

- ``GET /api/v4/update_settings/1`` names the configured update source;
- ``POST /api/v4/update_actions {"source": KEY, "action": "refresh"|"download"|"install"|"all"}``
  starts the work, which VergeOS does in the background;
- ``GET /api/v4/update_source_status?filter=source eq KEY`` is polled until its ``status`` is
  ``idle`` again (or ``error``);
- ``GET /api/v4/update_source_packages`` (what the source offers) against
  ``GET /api/v4/update_packages`` (what is installed) is the pending list.

Authentication: ``Authorization: Bearer <api_key>``, or Basic with username and password. The
API allows about 1000 requests an hour per key, so status polls are ``poll_interval`` apart.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError
from taskengine_core.ingress import is_loopback

from .pending import Pending

BUSY = {"refreshing", "downloading", "installing", "applying", "busy", "pending"}
PACKAGE_FIELDS = "name,version,downloaded"


class VergeosSource:
    name = "vergeos"

    def __init__(self, options: dict, ctx: ActionContext) -> None:
        self.options = options
        self.ctx = ctx
        url = options["url"].rstrip("/")
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise ActionError(f"vergeos: {url} is plain http; use https (credentials would "
                              "cross the network in clear)", retryable=False)
        self.api = url + "/api/v4/"
        self._session = None
        self._source_key = None

    @property
    def identity(self) -> dict:
        return {"url": self.api}

    # -- the four verbs --------------------------------------------------------------------------

    def refresh(self) -> None:
        self._act("refresh")

    def pending(self) -> list[Pending]:
        key = self.source_key()
        offered = self._get("update_source_packages",
                            {"filter": f"source eq {key}", "fields": PACKAGE_FIELDS})
        installed = {p.get("name"): p.get("version")
                     for p in self._get("update_packages", {"fields": "name,version"})}
        found = []
        for item in offered:
            name, version = item.get("name"), item.get("version")
            if not isinstance(name, str) or not isinstance(version, str):
                continue
            if installed.get(name) != version:
                found.append(Pending(name, installed.get(name), version, None))
        return sorted(found, key=lambda p: p.name)

    def download(self, pending: list[Pending]) -> None:
        self._act("download")

    def install(self, pending: list[Pending]) -> None:
        self._act("install", **({"force": True} if self.options.get("force") else {}))

    # -- HTTP ------------------------------------------------------------------------------------

    def source_key(self):
        if self._source_key is None:
            settings = self._request("GET", "update_settings/1", params={"fields": "source"})
            key = settings.get("source") if isinstance(settings, dict) else None
            if key in (None, "", 0):
                raise ActionError("vergeos: no update source is configured on the system "
                                  "(System → Updates → Edit Settings)", retryable=False)
            self._source_key = key
        return self._source_key

    def _act(self, action: str, **extra) -> None:
        key = self.source_key()
        self._request("POST", "update_actions", json={"source": key, "action": action, **extra})
        self._wait_idle(key, action)

    def _wait_idle(self, key, action: str) -> None:
        interval = float(self.options.get("poll_interval", 30))
        while True:
            rows = self._get("update_source_status",
                             {"filter": f"source eq {key}", "fields": "status,status_info"})
            row = rows[0] if rows else {}
            status = str(row.get("status") or "idle").lower()
            if status == "error":
                info = row.get("status_info") or "no details"
                raise ActionError(f"vergeos: {action} failed on the system: {info}",
                                  retryable=True, output={"status": row})
            if status not in BUSY:
                return
            left = self.ctx.time_left()
            if left is not None and left <= interval:
                raise ActionError(f"vergeos: {action} still {status} when the task's time "
                                  "limit ran out", retryable=True)
            if self.ctx.cancelled.wait(interval):
                raise ActionError(f"vergeos: cancelled while waiting for {action}",
                                  retryable=False)

    def _get(self, path: str, params: dict) -> list[dict]:
        body = self._request("GET", path, params=params)
        if isinstance(body, dict):
            body = [body]
        return [row for row in body or [] if isinstance(row, dict)]

    def _request(self, method: str, path: str, **kwargs):
        import requests

        session = self._session or self._make_session()
        url = self.api + path
        left = self.ctx.time_left()
        try:
            response = session.request(method, url, timeout=30 if left is None else max(1, min(30, left)),
                                        allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise ActionError(f"vergeos: {self.api} unreachable: {type(exc).__name__}",
                              retryable=True) from None
        code = response.status_code
        if code in (401, 403):
            raise ActionError(f"vergeos: {method} {path} refused ({code}): check api_key or "
                              "username/password in settings.updates.vergeos", retryable=False)
        if code == 429:
            raise ActionError("vergeos: rate limit reached (429); the task's retry policy tries "
                              "again later", retryable=True)
        if code == 507:
            raise ActionError(f"vergeos: {method} {path}: no space or resources left on the "
                              "system (507)", retryable=False)
        if code >= 400:
            raise ActionError(f"vergeos: {method} {path} answered {code}: "
                              f"{_excerpt(response.text)}", retryable=code >= 500)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ActionError(f"vergeos: {method} {path} did not answer JSON",
                              retryable=False) from None

    def _make_session(self):
        import requests

        session = requests.Session()
        session.trust_env = False  # no proxy from the environment for an API key
        if self.options.get("api_key"):
            session.headers["Authorization"] = f"Bearer {self.options['api_key']}"
        elif self.options.get("username"):
            session.auth = (self.options["username"], self.options.get("password") or "")
        else:
            raise ActionError("vergeos: set api_key (or username and password) in "
                              "settings.updates.vergeos", retryable=False)
        session.verify = self.options.get("ca_file") or self.options.get("verify_tls", True)
        self._session = session
        return session


def _excerpt(text: str) -> str:
    return " ".join(text.split())[:200]
