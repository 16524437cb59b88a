"""`extra` can never connect the call on: VoIPbin's `extra.actions` (its Call tutorial, "Simple outbound call
with TTS and connect") may talk, play and branch, but an action of type connect or transfer, or any nested
object naming a destination, number or target, is refused with the path of the value (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.provider_options import InvalidOption, validate_provider_options

TALK = {"type": "talk", "option": {"text": "hello", "language": "en-US"}}
CONNECT = {"type": "connect", "option": {"source": {"type": "tel", "target": "+15559876543"},
                                         "destinations": [{"type": "tel", "target": "+15551111111"}]}}


@pytest.mark.parametrize(("extra", "path"), [
    ({"actions": [TALK, CONNECT]}, "extra.actions[1].type"),
    ({"actions": [TALK, {"type": "Transfer", "option": {}}]}, "extra.actions[1].type"),
    ({"actions": [{"type": "talk", "option": {"destinations": [{"type": "tel", "target": "+15551111111"}]}}]},
     "extra.actions[0].option.destinations"),
    ({"actions": [{"type": "queue_join", "option": {"number": "+15551111111"}}]},
     "extra.actions[0].option.number"),
    ({"flow": {"steps": [[{"target": "+15551111111"}]]}}, "extra.flow.steps[0][0].target"),
])
def test_extra_refuses_a_connect_or_a_number_at_any_depth_naming_its_path(
    extra: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidOption) as refused:
        validate_provider_options("voipbin", {"extra": extra})
    assert refused.value.field == "provider_options.extra"
    assert refused.value.message.startswith(f"{path}:"), refused.value.message


def test_extra_still_takes_the_seed_actions_that_stay_within_the_call() -> None:
    # page, Simple outbound call with media file play
    play = {"type": "play", "option": {"stream_urls": ["https://example.test/a.wav"]}}
    # Simple outbound call with Branch
    branch = {"type": "branch", "option": {"default_target_id": "b", "target_ids": {"1": "c"}}}
    goto = {"type": "goto", "option": {"target_id": "a", "loop_count": 2}}  # Simple outbound call with Branch
    options = {"extra": {"actions": [TALK, play, branch, goto, {"type": "hangup"}]}}
    assert validate_provider_options("voipbin", options) == options
    with pytest.raises(InvalidOption, match=r"extra\.actions\[5\]\.type"):
        validate_provider_options("voipbin", {"extra": {"actions": [*options["extra"]["actions"], CONNECT]}})
