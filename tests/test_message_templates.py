"""What an answered call hears: templates filled from the CSV's columns, a warning per row that lacks a
variable (never a call that speaks `{first_name}`), the rendered text stored on each attempt and played by
the answer callback, in the campaign's voice and language, or its audio instead. End to end on real
Celery workers, the API, Postgres, Redis and the simulator."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.control import CampaignSettings, configure
from campaigns.errors import InvalidRequest
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.templates import check_script_options, render, template_variables
from tests.engine_harness import Stack, campaign_state, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.results_helpers import plivo_form, plivo_signed, signed_url
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.callbacks.answer_documents import answer_document

TEMPLATE = "Hello {first_name}, your appointment is on {date}."


def test_a_missing_variable_is_left_out_never_spoken_as_braces() -> None:
    assert render(TEMPLATE, {"first_name": "Ada", "date": "Monday"}).text == (
        "Hello Ada, your appointment is on Monday."
    )
    rendered = render(TEMPLATE, {"First_Name": "", "date": "Monday"})
    assert rendered.text == "Hello, your appointment is on Monday." and rendered.missing == ("first_name",)
    assert render("Costs {{10}} for {who}", {"who": "you"}).text == "Costs {10} for you"
    assert template_variables(TEMPLATE) == ["first_name", "date"]


@pytest.mark.parametrize("bad", ["Hello {first_name", "Hello {0}", "Hi {name:>10}", "Hi {name!r}", "Hi {}"])
def test_a_template_that_is_not_plain_variables_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="message template"):
        template_variables(bad)


def test_audio_url_voice_and_language_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="audio_url"):
        check_script_options({"audio_url": "ftp://x/y.mp3"})
    with pytest.raises(InvalidRequest, match="voice"):
        check_script_options({"voice": "<script>"})
    check_script_options({"audio_url": "https://cdn.example/a.mp3", "voice": "WOMAN", "language": "en-GB"})


def test_each_providers_document_carries_voice_language_or_audio() -> None:
    _, plivo = answer_document("plivo", message="Hi", redirect_url=None, voice="WOMAN", language="en_GB")
    assert '<Speak voice="WOMAN" language="en-GB">Hi</Speak>' in plivo
    _, bandwidth = answer_document("bandwidth", message="Hi", redirect_url=None, voice="julie",
                                   language="en-US")
    assert '<SpeakSentence voice="julie" locale="en_US">Hi</SpeakSentence>' in bandwidth
    _, audio = answer_document("bandwidth", message="Hi", redirect_url=None,
                               audio_url="https://cdn.example/a.mp3")
    assert "<PlayAudio>https://cdn.example/a.mp3</PlayAudio>" in audio and "Hi" not in audio
    assert answer_document("voipbin", message="Hi", redirect_url=None) == ("application/json", "{}")


SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MATEMPLATE", "auth_token": "tok-tpl", "cps": 50, "max_concurrent": 200},
]
ALL_ANSWER = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
              "talk_time": [1, 2], "ring_time": [1, 2]}
CSV = (
    "phone,first_name,date\n"
    "+12125557001,Ada,Monday\n"
    "+12125557002,,Tuesday\n"  # line 3: no first name
    "+12125557003,Grace,Wednesday\n"
    "+12125557004,Alan,\n"  # line 5: no date
)


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    with start_simulator({"accounts": SIM_ACCOUNTS, "outcomes": ALL_ANSWER}, speed=20.0, seed=2) as sim, \
            running_stack(workers=1, threads=8) as stack:
        yield sim, stack


def test_template_rows_warn_at_load_and_each_attempt_stores_and_plays_its_own_text(
    env: tuple[RunningSimulator, Stack], db: psycopg.Connection
) -> None:
    sim, stack = env
    report = load_campaign_csv(name="templated", source=io.BytesIO(CSV.encode()),
                               options=LoadOptions(message=TEMPLATE))
    campaign_id = report.campaign_id
    assert report.rows_loaded == 4 and report.rows_with_warnings == 2
    warnings = db.execute("SELECT line_no, detail FROM load_warning WHERE campaign_id = %s "
                          "ORDER BY line_no", (campaign_id,)).fetchall()
    assert [(line, "{first_name}" in d or "{date}" in d) for line, d in warnings] == [(3, True), (5, True)]

    account_id = add_account(db, name="templates", provider="plivo", auth_id="MATEMPLATE",
                             auth_token="tok-tpl", cps=50, max_concurrent=200, base_url=sim.base_url)
    prepare_and_start(db, campaign_id, account_id, start=False)
    configure(db, campaign_id, CampaignSettings(provider_options={"message": TEMPLATE, "voice": "WOMAN"}))
    warned = db.execute("SELECT count(*) FROM load_warning WHERE campaign_id = %s", (campaign_id,)).fetchone()
    assert warned == (2,)  # set again: the same two rows, not twice
    db.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
    wait_for(lambda: campaign_state(db, campaign_id) == "completed", timeout=60,
             what="the campaign to finish")

    spoken = dict(db.execute(
        "SELECT d.number, a.spoken_text FROM call_attempt a JOIN destination d ON d.id = a.destination_id "
        "WHERE a.campaign_id = %s", (campaign_id,)).fetchall())
    assert spoken == {
        "+12125557001": "Hello Ada, your appointment is on Monday.",
        "+12125557002": "Hello, your appointment is on Tuesday.",
        "+12125557003": "Hello Grace, your appointment is on Wednesday.",
        "+12125557004": "Hello Alan, your appointment is on.",
    }

    # The answer callback of one call plays that call's own text, in the campaign's voice.
    batch, number = db.execute(
        "SELECT a.batch_id, d.number FROM call_attempt a JOIN destination d ON d.id = a.destination_id "
        "WHERE a.campaign_id = %s AND d.number = '+12125557003'", (campaign_id,)).fetchone()
    url = signed_url(stack.api_url, "plivo", account_id, "answer", batch=str(batch))
    form = plivo_form(request_uuid=str(uuid.uuid4()), call_uuid=str(uuid.uuid4()), to=number.lstrip("+"),
                      event="StartApp", status="in-progress")
    body, headers = plivo_signed(url, form, "tok-tpl")
    answer = httpx.post(url, content=body, headers=headers, timeout=10)
    assert answer.status_code == 200
    assert '<Speak voice="WOMAN">Hello Grace, your appointment is on Wednesday.</Speak>' in answer.text
