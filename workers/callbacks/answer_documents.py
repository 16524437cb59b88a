"""What we answer a carrier's answer callback with: its own call-control XML (pure).

Plivo XML, Vobiz (Plivo-compatible), TryVox VoxML and Bandwidth BXML all take <Response>; the verb that
speaks differs, the Redirect verb takes its URL as text (Plivo XML) or as a `redirectUrl` attribute (BXML),
and VoIPbin wants no document. Each adapter declares which (`answer_document_kind`, `speak_verb`,
`redirect_url_attribute`). TryVox's seed names VoxML and none of its verbs: the Plivo-style ones are a guess
(docs/PROVIDERS.md).
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from workers.providers.registry import PROVIDERS

DEFAULT_MESSAGE = "This is an automated call. Goodbye."


def answer_document(provider: str, *, message: str | None, redirect_url: str | None) -> tuple[str, str]:
    """(media type, body) that plays the campaign's message or hands the call to its own answer URL."""
    adapter = PROVIDERS.get(provider)
    if adapter is not None and adapter.answer_document_kind == "none":
        return "application/json", "{}"
    if redirect_url:
        attribute = adapter.redirect_url_attribute if adapter is not None else None
        if attribute:
            redirect = f"<Redirect {attribute}={quoteattr(redirect_url)}/>"
        else:
            redirect = f"<Redirect>{escape(redirect_url)}</Redirect>"
        return "application/xml", f"<?xml version=\"1.0\"?><Response>{redirect}</Response>"
    speak = adapter.speak_verb if adapter is not None else "Speak"
    text = escape(message or DEFAULT_MESSAGE)
    return "application/xml", f"<?xml version=\"1.0\"?><Response><{speak}>{text}</{speak}></Response>"
