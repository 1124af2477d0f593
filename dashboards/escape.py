"""Text made safe for the HTML pages the dashboards write."""

from __future__ import annotations

__all__ = ["script_json"]


def script_json(text: str) -> str:
    """Make JSON text safe inside a ``<script>`` block: no ``<``, ``>`` or ``&`` characters."""
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
