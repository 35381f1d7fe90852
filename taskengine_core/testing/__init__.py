"""A testing kit for plugin authors, shipped with taskengine as a pytest plugin.

Installed with ``taskengine-core``, it gives every pytest run these fixtures (see
``docs/plugins.md``):

- ``taskengine``: a :class:`Harness`: an engine on a temporary database with the installed
  plugins and those named by ``taskengine_plugins`` loaded; ``apply`` rules, ``emit`` events,
  ``run_until_idle``, read ``runs``.
- ``taskengine_plugins``: override it in your ``conftest.py`` to load plugin modules that are
  not installed (an installed copy of the same module is used as it is, not loaded twice).
- ``smtp_receiver``: a local SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.
- ``http_receiver``: a local HTTP server on 127.0.0.1 that records each request and answers
  as told.

The classes can be used without pytest too.
"""

from __future__ import annotations

from taskengine_core.testing.harness import Harness
from taskengine_core.testing.receivers import HttpReceiver, HttpRequest, SmtpReceiver

__all__ = ["Harness", "HttpReceiver", "HttpRequest", "SmtpReceiver"]
