"""What we answer a carrier's answer callback with: its own call-control XML (pure)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

DEFAULT_MESSAGE = "This is an automated call. Goodbye."

# Plivo XML, Vobiz (Plivo-compatible), TryVox VoxML and Bandwidth BXML all take <Response>; the verbs differ.
# TryVox's seed names VoxML and nothing of its verbs: the Plivo-style ones are a guess (docs/PROVIDERS.md).
_SPEAK_VERB = {"plivo": "Speak", "vobiz": "Speak", "tryvox": "Speak", "bandwidth": "SpeakSentence"}


def answer_document(provider: str, *, message: str | None, redirect_url: str | None) -> tuple[str, str]:
    """(media type, body) that plays the campaign's message or hands the call to its own answer URL."""
    if provider == "voipbin":  # VoIPbin takes actions at creation; its webhooks expect no document
        return "application/json", "{}"
    if redirect_url:
        if provider == "bandwidth":  # BXML's Redirect takes the URL as its redirectUrl attribute
            redirect = f"<Redirect redirectUrl={quoteattr(redirect_url)}/>"
            return "application/xml", f"<?xml version=\"1.0\"?><Response>{redirect}</Response>"
        target = escape(redirect_url)
        return "application/xml", f"<?xml version=\"1.0\"?><Response><Redirect>{target}</Redirect></Response>"
    speak = _SPEAK_VERB.get(provider, "Speak")
    text = escape(message or DEFAULT_MESSAGE)
    return "application/xml", f"<?xml version=\"1.0\"?><Response><{speak}>{text}</{speak}></Response>"
