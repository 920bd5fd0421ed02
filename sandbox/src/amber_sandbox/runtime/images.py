"""Image references as kubelet judges them before it pulls, for a runtime that runs no images.

The sandbox runs a container's command on the host and ignores its image (decision 0011), but
two outcomes of a real pull are part of what clients must handle, so they are kept: a reference
that does not parse is ``InvalidImageName`` and never runs; an image on a registry that cannot
exist fails its pull (``ErrImagePull``, then ``ImagePullBackOff`` between retries) and never
runs either. Registries under ``.invalid`` (RFC 2606: never resolvable) are the ones that cannot
exist, so a test that uses one behaves the same on a real cluster.
"""

from __future__ import annotations

import re

_ALNUM = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_ALNUM})(?:\.{_ALNUM})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
#: The reference grammar of the distribution project (domain, path, tag, digest).
_REFERENCE = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?{_COMPONENT}(?:/{_COMPONENT})*"
                        rf"(?::{_TAG})?(?:@{_DIGEST})?$")


def invalid(image: str) -> str | None:
    """kubelet's message for a reference that does not parse, or None when it parses (an
    empty image is the sandbox's leniency: it runs commands, not images)."""
    if not image or _REFERENCE.match(image):
        return None
    return (f'Failed to apply default image tag "{image}": couldn\'t parse image name '
            f'"{image}": invalid reference format')


def unpullable(image: str) -> str | None:
    """The pull error of an image whose registry cannot exist, or None."""
    found = _REFERENCE.match(image) if image else None
    if not found or not found.group("domain"):
        return None
    host = found.group("domain").rsplit(":", 1)[0].lower()
    if host == "invalid" or host.endswith(".invalid"):
        return (f'failed to pull and unpack image "{image}": failed to resolve reference '
                f'"{image}": dial tcp: lookup {host}: no such host')
    return None
