"""Message templates: `Hello {first_name}, your appointment is on {date}` filled from each destination's
CSV columns (pure), and the load-time warnings for rows that lack a variable (Postgres).

A missing variable is never spoken as `{first_name}`: it renders as nothing (and the spaces around it
close up), and the row gets a warning in load_warning when the template is set or the CSV is loaded.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from campaigns.errors import InvalidRequest

if TYPE_CHECKING:  # the loader's parser processes import this module: no psycopg there
    import psycopg

MISSING_VARIABLE = "missing_variable"
_FORMATTER = string.Formatter()
_SPACES = re.compile(r"\s{2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ \-]*$")
_OPTION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class Rendered:
    text: str
    missing: tuple[str, ...]  # variables the destination had no value for


def template_variables(template: str) -> list[str]:
    """The `{names}` a template uses, in order of first use; InvalidRequest names what is wrong."""
    names: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:  # an unmatched { or }
        raise InvalidRequest(f"message template: {exc} (write {{{{ and }}}} for literal braces)") from exc
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or not _NAME.match(name) or spec or conversion:
            raise InvalidRequest(
                f"message template: {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a variable; "
                "use a CSV column name such as {first_name}"
            )
        if name not in names:
            names.append(name)
    return names


def render(template: str, variables: Mapping[str, Any]) -> Rendered:
    """The text an answered call hears. Values are the destination's CSV columns (matched exactly, then
    ignoring case); a missing or empty one renders as nothing."""
    lowered = {str(k).lower(): v for k, v in variables.items()}
    parts: list[str] = []
    missing: list[str] = []
    for literal, name, _, _ in _FORMATTER.parse(template):
        parts.append(literal)
        if name is None:
            continue
        value = variables.get(name, lowered.get(name.lower()))
        if value is None or str(value).strip() == "":
            if name not in missing:
                missing.append(name)
            continue
        parts.append(str(value).strip())
    text = "".join(parts)
    if missing:
        text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text)).strip()
    return Rendered(text, tuple(missing))


def record_missing_variables(conn: psycopg.Connection, campaign_id: int, template: str | None) -> int:
    """Replace the campaign's missing-variable warnings: one per row and variable it lacks. Returns how many
    rows have at least one. Runs in the caller's transaction."""
    conn.execute(
        "DELETE FROM load_warning WHERE campaign_id = %s AND reason = %s", (campaign_id, MISSING_VARIABLE)
    )
    names = template_variables(template) if template else []
    if not names:
        return 0
    # A column matches case-insensitively, as render() does; empty values count as missing.
    conn.execute(
        """
        INSERT INTO load_warning (campaign_id, line_no, reason, detail)
        SELECT d.campaign_id, d.line_no, %(reason)s, 'no value for {' || v.name || '}: it is left out'
        FROM destination d CROSS JOIN unnest(%(names)s::text[]) AS v(name)
        WHERE d.campaign_id = %(c)s AND NOT EXISTS (
            SELECT 1 FROM jsonb_each_text(d.variables) AS kv(key, value)
            WHERE lower(kv.key) = lower(v.name) AND btrim(kv.value) <> '')
        """,
        {"reason": MISSING_VARIABLE, "names": names, "c": campaign_id},
    )
    row = conn.execute(
        "SELECT count(DISTINCT line_no) FROM load_warning WHERE campaign_id = %s AND reason = %s",
        (campaign_id, MISSING_VARIABLE),
    ).fetchone()
    return int(row[0]) if row else 0


def list_warnings(
    conn: psycopg.Connection, campaign_id: int, limit: int = 1000
) -> list[tuple[int, str, str]]:
    """(line, reason, detail) of the campaign's load warnings, by line."""
    rows = conn.execute(
        "SELECT line_no, reason, coalesce(detail, '') FROM load_warning WHERE campaign_id = %s "
        "ORDER BY line_no, id LIMIT %s",
        (campaign_id, limit),
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


# What an answered call hears, as provider_options keys: the message template, or an audio URL played
# instead; a voice and a language where the provider's speak verb takes them.
SCRIPT_OPTIONS = ("message", "audio_url", "voice", "language")


def check_script_options(options: Mapping[str, Any]) -> None:
    """InvalidRequest naming the bad key among a campaign's message, audio URL, voice and language."""
    message = options.get("message")
    if message is not None:
        if not isinstance(message, str):
            raise InvalidRequest("message: expected text")
        template_variables(message)
    audio_url = options.get("audio_url")
    if audio_url is not None and (
        not isinstance(audio_url, str) or not re.match(r"^https?://[^\s]+$", audio_url)
    ):
        raise InvalidRequest(f"audio_url: expected an http(s) URL, got {audio_url!r}")
    for key in ("voice", "language"):
        value = options.get(key)
        if value is not None and (not isinstance(value, str) or not _OPTION_NAME.match(value)):
            raise InvalidRequest(f"{key}: expected a name such as WOMAN, en-US or julie, got {value!r}")
