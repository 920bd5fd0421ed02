"""The environment of every child process Amber starts (outside the sandbox runtime).

Children (kubeconfig exec credential plugins, kubectl) inherit our environment, which may hold the
repository passphrase: ``AMBER_PASSWORD``, ``AMBER_PASSWORD_FILE`` and any other
``AMBER_PASSWORD*``. None of them needs it, and a credential plugin is third-party code, so
``child_env`` is the one way to build a child's environment: ours without those, plus the extras.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Variables whose name starts with this are never passed to a child process.
SCRUBBED_PREFIX = "AMBER_PASSWORD"


def child_env(extra: Mapping[str, str] | None = None,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ``os.environ``) without the passphrase variables, updated with
    ``extra``; the extras are scrubbed too, so a kubeconfig cannot put them back."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.upper().startswith(SCRUBBED_PREFIX)}
    for key, value in (extra or {}).items():
        if not key.upper().startswith(SCRUBBED_PREFIX):
            env[key] = value
    return env
