"""HTML of the playground's results for st.html; every piece of user text is escaped."""

from __future__ import annotations

import html
from typing import Sequence

from .text import Segment

ENTITY_COLORS = ("#ffe082", "#a5d6a7", "#90caf9", "#f48fb1", "#ce93d8", "#ffab91", "#80deea", "#e6ee9c")


def entity_colors(segments: Sequence[Segment]) -> dict[str, str]:
    kinds = sorted({s.entity for s in segments if s.entity})
    return {kind: ENTITY_COLORS[i % len(ENTITY_COLORS)] for i, kind in enumerate(kinds)}


def entities_html(segments: Sequence[Segment]) -> str:
    """The text with each entity on a coloured background, its type in small caps after it."""
    colors = entity_colors(segments)
    parts = []
    for segment in segments:
        text = html.escape(segment.text)
        if segment.entity is None:
            parts.append(text)
        else:
            parts.append(
                f'<span title="{html.escape(segment.entity)} · {segment.score:.0%}" style="background:{colors[segment.entity]};'
                f'padding:0.1em 0.35em;border-radius:0.35em;margin:0 0.1em">{text}'
                f'<span style="font-size:0.7em;font-weight:600;margin-left:0.35em;opacity:0.75">{html.escape(segment.entity)}</span></span>'
            )
    return f'<div style="font-size:1.15rem;line-height:2.1">{"".join(parts)}</div>'


def highlight_html(context: str, start: int, end: int) -> str:
    """The context with the answer span highlighted."""
    before, answer, after = (html.escape(part) for part in (context[:start], context[start:end], context[end:]))
    return (f'<div style="font-size:1.1rem;line-height:1.9">{before}<mark style="background:#ffd54f;padding:0.1em 0.3em;'
            f'border-radius:0.3em;font-weight:600">{answer}</mark>{after}</div>')
