"""The ``pypi`` source: a PEP 503/691 simple index, the versions installed in one Python
environment, compared with ``packaging``.

The index is asked for PEP 691 JSON first and read as PEP 503 HTML when it answers with HTML
(a static file tree does). Yanked files are ignored, and so are pre-releases unless asked for.
Downloads and installs go through the environment's own pip, always with ``--isolated`` so the
machine's pip configuration cannot add indexes of its own.
"""

from __future__ import annotations

import json
import os
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import InvalidVersion, Version

from taskengine_command.process import run_process
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

from .pending import Pending

ACCEPT = ("application/vnd.pypi.simple.v1+json, "
          "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1")
MAX_PAGE = 64 * 1024 * 1024
# run by the environment's own interpreter: prints {name: version} of the names given as arguments
VERSIONS_SCRIPT = (
    "import json, sys\n"
    "from importlib.metadata import version, PackageNotFoundError\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try: out[name] = version(name)\n"
    "    except PackageNotFoundError: out[name] = None\n"
    "print(json.dumps(out))\n"
)


class PypiSource:
    name = "pypi"

    def __init__(self, options: dict, ctx: ActionContext) -> None:
        self.options = options
        self.ctx = ctx
        self.index = options["index"].rstrip("/") + "/"
        self.packages = list(options["packages"])

    @property
    def identity(self) -> dict:
        return {"index": self.index, "python": self.options.get("python"),
                "site": self.options.get("site"), "packages": sorted(self.packages)}

    def refresh(self) -> None:
        """The index is read fresh on every check: nothing to refresh."""

    def pending(self) -> list[Pending]:
        installed = self.installed()
        found = []
        for name in self.packages:
            current = installed.get(name)
            if current is None:
                continue  # not installed: nothing to update
            best = self.candidate(name)
            if best is None:
                continue
            version, size = best
            try:
                newer = version > Version(current)
            except InvalidVersion:
                newer = True  # an unparseable installed version: report what the index has
            if newer:
                found.append(Pending(name, current, str(version), size))
        return found

    def download(self, pending: list[Pending]) -> None:
        target = self.options.get("download_dir")
        if not target:
            raise ActionError("pypi: updates.download needs download_dir (settings.updates.pypi "
                              "or the task's 'with:')", retryable=False)
        os.makedirs(target, exist_ok=True)
        python = self.options.get("python") or sys.executable
        self._pip(python, ["download", "--no-deps", "--dest", target, *_pins(pending)])

    def install(self, pending: list[Pending]) -> None:
        python = self.options.get("python")
        if not python:
            raise ActionError("pypi: updates.install needs the environment's python executable "
                              "(python), not a site directory", retryable=False)
        self._pip(python, ["install", "--upgrade", *_pins(pending)])

    # -- the environment -----------------------------------------------------------------------

    def installed(self) -> dict[str, str | None]:
        if self.options.get("python"):
            return self._installed_by_python(self.options["python"])
        site = self.options["site"]
        if not os.path.isdir(site):
            raise ActionError(f"pypi: the site directory {site!r} does not exist", retryable=False)
        from importlib.metadata import distributions

        seen: dict[str, str] = {}
        for dist in distributions(path=[site]):
            name = dist.metadata["Name"]
            if name:
                seen.setdefault(canonicalize_name(name), dist.version)
        return {name: seen.get(canonicalize_name(name)) for name in self.packages}

    def _installed_by_python(self, python: str) -> dict[str, str | None]:
        out = self._run([python, "-I", "-c", VERSIONS_SCRIPT, *self.packages],
                        what=f"reading installed versions with {python}")
        try:
            versions = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ActionError(f"pypi: {python} did not report installed versions",
                              retryable=False) from None
        return versions

    # -- the index -----------------------------------------------------------------------------

    def candidate(self, name: str) -> tuple[Version, int | None] | None:
        """The newest release of ``name`` on the index and the size of one of its files."""
        url = urljoin(self.index, canonicalize_name(name) + "/")
        files = self._files(url)
        want = canonicalize_name(name)
        best: tuple[Version, int | None] | None = None
        for file in files:
            if file.get("yanked"):
                continue
            version = _version_of(file.get("filename", ""), want)
            if version is None or (version.is_prerelease and not self.options.get("prereleases")):
                continue
            if best is None or version > best[0]:
                best = (version, file.get("size"))
            elif version == best[0] and best[1] is None:
                best = (version, file.get("size"))
        return best

    def _files(self, url: str) -> list[dict]:
        import requests

        try:
            response = requests.get(url, headers={"Accept": ACCEPT}, timeout=self._timeout(),
                                    allow_redirects=True, stream=True)
            body = response.raw.read(MAX_PAGE + 1, decode_content=True)
        except requests.RequestException as exc:
            raise ActionError(f"pypi: index unreachable: {url}: {_reason(exc)}",
                              retryable=True) from None
        if response.status_code == 404:
            return []  # the index does not have this project
        if response.status_code >= 400:
            raise ActionError(f"pypi: index answered {response.status_code} for {url}",
                              retryable=response.status_code >= 500)
        if len(body) > MAX_PAGE:
            raise ActionError(f"pypi: the index page {url} is larger than {MAX_PAGE} bytes",
                              retryable=False)
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        if kind == "application/vnd.pypi.simple.v1+json":
            try:
                return [f for f in json.loads(body).get("files", []) if isinstance(f, dict)]
            except (ValueError, AttributeError):
                raise ActionError(f"pypi: the index sent bad JSON for {url}",
                                  retryable=False) from None
        parser = _Anchors()
        parser.feed(body.decode("utf-8", errors="replace"))
        return parser.files

    def _timeout(self) -> float:
        left = self.ctx.time_left()
        return 30.0 if left is None else max(1.0, min(30.0, left))

    # -- pip -----------------------------------------------------------------------------------

    def _pip(self, python: str, args: list[str]) -> None:
        self._run([python, "-m", "pip", args[0], "--isolated", "--disable-pip-version-check",
                   "--no-input", "--index-url", self.index, *args[1:]],
                  what=f"pip {args[0]}")

    def _run(self, argv: list[str], *, what: str) -> str:
        if self.ctx.cancelled.is_set():
            raise ActionError("pypi: not started, the run was cancelled", retryable=False)
        try:
            outcome = run_process(argv, env=dict(os.environ, PYTHONNOUSERSITE="1"), cwd=None,
                                  stdin=None, limit=self.ctx.time_left(), max_output=1 << 20,
                                  cancelled=self.ctx.cancelled)
        except (FileNotFoundError, PermissionError):
            raise ActionError(f"pypi: cannot run {argv[0]!r} (settings.updates.pypi.python)",
                              retryable=False) from None
        err = outcome.stderr.text()
        if outcome.ended != "exited":
            raise ActionError(f"pypi: {what} was {outcome.ended}", retryable=outcome.ended == "timeout")
        if outcome.exit_code != 0:
            last = [line for line in err.splitlines() if line.strip()][-1:] or [""]
            space = "No space left on device" in err
            raise ActionError(
                f"pypi: {what} failed (exit code {outcome.exit_code}): "
                + ("no space left on device" if space else last[0].strip()),
                retryable=not space, output={"stderr": err[-4000:]})
        return outcome.stdout.text()


def _pins(pending: list[Pending]) -> list[str]:
    return [f"{p.name}=={p.candidate}" for p in pending]


def _version_of(filename: str, want: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return version if canonicalize_name(name) == want else None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "No route to host"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


class _Anchors(HTMLParser):
    """PEP 503: one <a> per file; its text is the filename, ``data-yanked`` marks yanked ones."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            attrs = dict(attrs)
            href = attrs.get("href") or ""
            self._open = {"filename": unquote(os.path.basename(urlsplit(href).path)),
                          "yanked": "data-yanked" in attrs}

    def handle_endtag(self, tag):
        if tag == "a" and self._open is not None:
            self.files.append(self._open)
            self._open = None
