"""Numbers for carriers whose pages allow E.164 only (TryVox: Request Parameters `to`, and Notes; Bandwidth:
Supported Parameters `from`, `to`; VoIPbin, whose page gives SIP addresses no type): a SIP URI that reaches
such an adapter is refused before anything is sent. The loader refuses them first, by each provider's
`traits.options.destination_kinds`; this is the last guard, with the page's reason."""

from __future__ import annotations

from workers.providers.errors import Rejected
from workers.providers.http import e164

SIP_SCHEMES = ("sip:", "sips:")


def tel_number(provider: str, number: str, where: str) -> str:
    """`number` in E.164 with its '+'; Rejected (the attempt fails, nothing sent) for a SIP URI, naming the
    page line (`where`) that allows numbers only."""
    if number.strip().lower().startswith(SIP_SCHEMES):
        raise Rejected(f"{provider} dials E.164 numbers only ({where}); {number!r} is a SIP URI")
    return e164(number)
