"""wrenctl, Wren's calicoctl: resource files in, tables and re-appliable YAML out.

The commands are thin: validation lives in `wren.model`, datastore rules in `wren.client`.
"""

from __future__ import annotations

__all__: list[str] = []
