"""The pure redaction of workers.providers.redaction: which forms, and how text is shortened after."""

from __future__ import annotations

from tests.test_provider_redaction import no_part_of
from workers.providers.redaction import MIN_FRAGMENT, redact_secrets, secret_forms


def test_shortening_never_exceeds_the_limit_nor_ends_in_the_start_of_a_secret() -> None:
    forms = secret_forms("abcdefghij")
    for cut in range(MIN_FRAGMENT, 10):
        said = redact_secrets("y" * 30 + "abcdefghij"[:cut], forms, limit=25 + cut)
        assert len(said) <= 25 + cut
        assert not said.endswith("abcd") and no_part_of("abcdefghij", said)


def test_short_secrets_and_ordinary_endings_are_left_alone() -> None:
    assert secret_forms("abc") == set()
    assert redact_secrets("the carrier says no", secret_forms("zzzzzz")) == "the carrier says no"
