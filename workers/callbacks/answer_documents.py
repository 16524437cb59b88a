"""What we answer a carrier's answer callback with: its own call-control XML (pure).

Plivo XML, Vobiz (Plivo-compatible), TryVox VoxML and Bandwidth BXML all take <Response>; the verbs that
speak and play differ, and so do the speak verb's voice and language attributes; the Redirect verb takes
its URL as text (Plivo XML) or as a `redirectUrl` attribute (BXML), and VoIPbin wants no document (its
actions are given at creation). Each adapter declares which in its traits' `answer` (`document_kind`,
`speak_verb`, `speak_voice_attribute`, `speak_language_attribute`, `play_verb`, `redirect_url_attribute`).
TryVox's seed names VoxML and none of its verbs: the Plivo-style ones are a guess (docs/PROVIDERS.md).
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from workers.providers.registry import PROVIDERS

DEFAULT_MESSAGE = "This is an automated call. Goodbye."


def answer_document(
    provider: str,
    *,
    message: str | None,
    redirect_url: str | None,
    voice: str | None = None,
    language: str | None = None,
    audio_url: str | None = None,
) -> tuple[str, str]:
    """(media type, body) that hands the call to the campaign's own answer URL, plays its audio, or speaks
    its message (rendered for this call) in its voice and language."""
    adapter = PROVIDERS.get(provider)
    if adapter is not None and adapter.traits.answer.document_kind == "none":
        return "application/json", "{}"
    if redirect_url:
        attribute = adapter.traits.answer.redirect_url_attribute if adapter is not None else None
        if attribute:
            return "application/xml", _document(f"<Redirect {attribute}={quoteattr(redirect_url)}/>")
        return "application/xml", _document(f"<Redirect>{escape(redirect_url)}</Redirect>")
    if audio_url:
        play = adapter.traits.answer.play_verb if adapter is not None else "Play"
        return "application/xml", _document(f"<{play}>{escape(audio_url)}</{play}>")
    speak = adapter.traits.answer.speak_verb if adapter is not None else "Speak"
    attributes = ""
    if voice:
        attribute = adapter.traits.answer.speak_voice_attribute if adapter else "voice"
        attributes += f" {attribute}={quoteattr(voice)}"
    if language:
        name = adapter.traits.answer.speak_language_attribute if adapter else "language"
        # A locale attribute (BXML) is written en_US; a language attribute en-US.
        value = language.replace("-", "_") if name == "locale" else language.replace("_", "-")
        attributes += f" {name}={quoteattr(value)}"
    text = escape(message or DEFAULT_MESSAGE)
    return "application/xml", _document(f"<{speak}{attributes}>{text}</{speak}>")


def hangup_document(provider: str) -> tuple[str, str]:
    """(media type, body) that ends the call at once: <Hangup/> in Plivo XML, VoxML and BXML alike; what a
    "hangup" campaign answers a machine-detection callback with (workers.callbacks.machine_hangup)."""
    adapter = PROVIDERS.get(provider)
    if adapter is not None and adapter.traits.answer.document_kind == "none":
        return "application/json", "{}"
    return "application/xml", _document("<Hangup/>")


def _document(verbs: str) -> str:
    return f"<?xml version=\"1.0\"?><Response>{verbs}</Response>"
