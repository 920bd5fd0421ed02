"""The one type of a Kubernetes object in the sandbox: the decoded JSON the API serves.

The API server, its clients, the controllers and the node agent all work on objects exactly as
they travel on the wire (no typed models), so they read what any client would. The alias is
spelled here once rather than in every module that handles objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: An object as decoded from (or about to be encoded to) the API's JSON.
Obj = dict[str, Any]
#: The same, read-only: what a function that only reads an object (or a part of one) accepts.
ObjView = Mapping[str, Any]
