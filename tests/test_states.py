"""The state machines, one row per pair of states: every allowed move and every refused one."""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from pathlib import Path

import pytest

from campaigns.db import SCHEMA_PATH
from campaigns.states import (
    ATTEMPT_OWNERS,
    DESTINATION_OWNERS,
    FINAL_ATTEMPT,
    FINAL_DESTINATION,
    RUN_RESET_TARGET,
    RUN_RESETTABLE,
    AttemptStatus,
    CampaignState,
    CircuitState,
    DestinationStatus,
    Outcome,
    Routing,
    RunTrigger,
    attempt_can_move,
    can_move,
    owner_table_markdown,
    sql_in,
    sql_values,
)

D = DestinationStatus
A = AttemptStatus

# The destination moves the engine makes, written out by hand (docs/DESIGN.md's machine), so the table in
# campaigns/states.py is checked against an independent statement of it.
DESTINATION_MOVES = {
    (D.PENDING, D.QUEUED), (D.RETRY_WAIT, D.QUEUED),
    (D.QUEUED, D.DIALING), (D.QUEUED, D.PENDING), (D.QUEUED, D.RETRY_WAIT), (D.QUEUED, D.FAILED),
    (D.DIALING, D.RINGING), (D.DIALING, D.ANSWERED), (D.RINGING, D.ANSWERED),
    *((live, end) for live in (D.DIALING, D.RINGING, D.ANSWERED)
      for end in (D.RETRY_WAIT, D.DONE, D.FAILED, D.UNKNOWN)),
    (D.UNKNOWN, D.RETRY_WAIT), (D.UNKNOWN, D.DONE), (D.UNKNOWN, D.FAILED),
    (D.DIALING, D.PENDING), (D.DIALING, D.QUEUED),  # an attempt that never reached the carrier, undone
    *((waiting, end) for waiting in (D.PENDING, D.QUEUED, D.RETRY_WAIT)
      for end in (D.DNC, D.INVALID, D.CANCELLED, D.EXPIRED)),
    # A cancelled campaign: an unsent attempt is undone, and a call that would retry ends cancelled.
    *((live, D.CANCELLED) for live in (D.DIALING, D.RINGING, D.ANSWERED, D.UNKNOWN)),
}

ATTEMPT_MOVES = {
    (A.DIALING, A.SENT), (A.DIALING, A.RINGING), (A.DIALING, A.ANSWERED), (A.SENT, A.RINGING),
    (A.SENT, A.ANSWERED), (A.RINGING, A.ANSWERED),
    *((open_, end) for open_ in (A.DIALING, A.SENT, A.RINGING, A.ANSWERED)
      for end in (A.COMPLETED, A.FAILED, A.UNKNOWN)),
    (A.UNKNOWN, A.COMPLETED),  # a late final event resolves an attempt the reaper gave up on
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(D, D)))
def test_a_destination_moves_only_along_the_machine(current: D, target: D) -> None:
    assert can_move(current, target) == ((current, target) in DESTINATION_MOVES)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(A, A)))
def test_an_attempt_moves_only_forward(current: A, target: A) -> None:
    assert attempt_can_move(current, target) == ((current, target) in ATTEMPT_MOVES)


def test_every_non_final_state_has_an_owner_a_deadline_and_a_way_out() -> None:
    assert set(DESTINATION_OWNERS) == set(D) - FINAL_DESTINATION
    assert set(ATTEMPT_OWNERS) == set(A) - FINAL_ATTEMPT
    for state, owner in [*DESTINATION_OWNERS.items(), *ATTEMPT_OWNERS.items()]:
        assert owner.owner and owner.deadline and owner.setting, state
        assert owner.moves_to and state not in owner.moves_to, state
    assert DESTINATION_OWNERS[D.QUEUED].moves_to == {D.DIALING, D.PENDING, D.RETRY_WAIT, D.FAILED, D.DNC,
                                                      D.INVALID, D.CANCELLED, D.EXPIRED}


def test_a_final_destination_never_moves_except_unknown_resolved_by_a_late_event() -> None:
    for current in FINAL_DESTINATION - {D.UNKNOWN}:
        assert not any(can_move(current, target) for target in D), current


def test_status_lists_render_as_sql_literals_in_the_machines_order() -> None:
    assert sql_in("d.status", {D.RETRY_WAIT, D.PENDING}) == "d.status IN ('pending', 'retry_wait')"
    assert sql_in("status", {A.ANSWERED, A.DIALING}) == "status IN ('dialing', 'answered')"
    assert sql_values({D.RETRY_WAIT, D.PENDING}) == ["pending", "retry_wait"]
    with pytest.raises(ValueError):
        sql_in("status", set())


def test_the_owner_table_in_the_readme_and_the_design_is_the_one_in_the_code() -> None:
    root = Path(__file__).resolve().parent.parent
    table = owner_table_markdown()
    for doc in ("README.md", "docs/DESIGN.md"):
        assert table in (root / doc).read_text(), (
            f"{doc}: the owner table differs from campaigns.states; paste `python -m campaigns.states`"
        )


def test_a_new_run_is_the_only_way_out_of_a_final_state_and_never_for_dnc_invalid_or_cancelled() -> None:
    assert RUN_RESET_TARGET == D.PENDING and RUN_RESETTABLE <= FINAL_DESTINATION
    assert not RUN_RESETTABLE & {D.DNC, D.INVALID, D.CANCELLED}
    # The engine's own moves never leave a final state for pending: only campaigns.runs does, by name.
    assert not any(can_move(final, D.PENDING) for final in FINAL_DESTINATION)


# The columns whose values are a StrEnum of campaigns.states, and schema.sql's CHECK for each.
SCHEMA_ENUMS: list[tuple[str, str, type[StrEnum]]] = [
    ("campaign", "state", CampaignState),
    ("destination", "status", DestinationStatus),
    ("call_attempt", "status", AttemptStatus),
    ("call_attempt", "outcome", Outcome),
    ("campaign_run", "trigger", RunTrigger),
    ("account_circuit", "state", CircuitState),
    ("campaign", "routing", Routing),
]
STATUS_WORDS = {member.value for _, _, enum in SCHEMA_ENUMS for member in enum}
# A SQL list of quoted words (`IN ('a', 'b')`, `ARRAY['a', 'b']`), across line breaks.
QUOTED_SQL_LIST = re.compile(
    r"\b(?:IN\s*\(|ARRAY\s*\[)\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*[)\]]", re.IGNORECASE
)


def check_constraint_values(schema: str, table: str, column: str) -> list[str]:
    """The values schema.sql's CHECK (column IN (...)) allows in `table`, in its order."""
    body = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\);", schema, re.DOTALL)
    assert body is not None, f"schema.sql has no table {table}"
    # A column added later is its own ALTER TABLE … ADD COLUMN statement, CHECK included.
    added = re.search(rf"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} ([^;]*);", schema)
    check = re.search(rf"CHECK \({column} IN \(([^)]*)\)\)", added.group(1) if added else body.group(1))
    assert check is not None, f"schema.sql has no CHECK on {table}.{column}"
    return re.findall(r"'([^']*)'", check.group(1))


def hand_typed_status_lists(source: str) -> list[int]:
    """Lines of SQL lists written out by hand that hold a status word (they belong in sql_in/sql_values)."""
    return [
        source.count("\n", 0, found.start()) + 1
        for found in QUOTED_SQL_LIST.finditer(source)
        if set(re.findall(r"'([^']*)'", found.group(1))) & STATUS_WORDS
    ]


@pytest.mark.parametrize(("table", "column", "enum"), SCHEMA_ENUMS)
def test_each_status_enum_is_the_check_constraint_of_its_column(
    table: str, column: str, enum: type[StrEnum]
) -> None:
    schema = SCHEMA_PATH.read_text()
    assert check_constraint_values(schema, table, column) == [member.value for member in enum]


def test_no_status_list_in_the_domain_or_the_engine_is_typed_by_hand() -> None:
    root = Path(__file__).resolve().parent.parent
    found = {
        str(path.relative_to(root)): lines
        for package in ("campaigns", "workers")
        for path in sorted((root / package).rglob("*.py"))
        if (lines := hand_typed_status_lists(path.read_text()))
    }
    assert found == {}, "build these lists from campaigns.states (sql_in / sql_values)"


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("q = \"WHERE c.state IN ('running', 'paused')\"", [1]),
        ("q = '''\nWHERE status in (\n    'dialing',\n    'sent')'''", [2]),
        ("q = \"WHERE status = ANY(ARRAY['done', 'failed'])\"", [1]),
        ("q = \"WHERE provider IN ('plivo', 'vobiz')\"", []),  # not a status list
        ("q = f\"WHERE {sql_in('status', OPEN_ATTEMPT)}\"", []),
    ],
)
def test_the_status_list_finder_sees_lists_across_lines_and_arrays_only_of_status_words(
    source: str, lines: list[int]
) -> None:
    assert hand_typed_status_lists(source) == lines
