"""campaigns/store/ is the one writer of dialing state: no other module of campaigns/ or workers/ inserts,
updates, deletes, copies, merges or truncates rows of `destination`, `call_attempt` or `call_event`.

Read with ast from every string constant (an f-string's literal parts joined, its fields as `{}`), so SQL
split over lines or built in pieces is seen, and a comment or a docstring naming a statement is not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED = ("campaigns", "workers")
THE_WRITER = REPO / "campaigns" / "store"
TABLES = ("destination", "call_attempt", "call_event")

# A write statement's head and its table: any spacing (line breaks too), an optional ONLY, schema or
# quotes; what follows the table (an alias, a column list, USING, FROM STDIN) does not matter.
WRITE = re.compile(
    r"\b(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM|COPY|MERGE\s+INTO|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?"
    rf"(?:public\s*\.\s*)?\"?({'|'.join(TABLES)})\"?(?![\w.])",
    re.IGNORECASE,
)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose about statements, not statements)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _texts(tree: ast.AST) -> list[tuple[int, str]]:
    """(first line, text) of every string constant and f-string outside docstrings."""
    skip = _docstrings(tree)
    texts: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [p.value if isinstance(p, ast.Constant) else "{}" for p in node.values]
            texts.append((node.lineno, "".join(str(p) for p in parts)))
            skip.update(id(p) for p in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            texts.append((node.lineno, node.value))
    return texts


def table_writes(source: str) -> list[tuple[int, str]]:
    """(line, table) of each write to a dialing table that `source` spells out."""
    found = set()
    for lineno, text in _texts(ast.parse(source)):
        for match in WRITE.finditer(text):
            found.add((lineno + text.count("\n", 0, match.start()), match.group(1).lower()))
    return sorted(found)


def writers_outside_the_store() -> list[str]:
    """`path:line writes table` for every write outside campaigns/store/."""
    found = []
    for package in SCANNED:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.is_relative_to(THE_WRITER):
                continue
            for line, table in table_writes(path.read_text()):
                found.append(f"{path.relative_to(REPO)}:{line} writes {table}")
    return found


def test_only_the_store_writes_destinations_attempts_and_events() -> None:
    found = writers_outside_the_store()
    assert found == [], "written outside campaigns/store/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('Q = "UPDATE destination SET status = %s WHERE id = %s"\n', [(1, "destination")]),
        ('Q = """\nWITH x AS (SELECT 1)\nUPDATE destination d SET status = 1\n"""\n', [(3, "destination")]),
        ('Q = "INSERT INTO call_event (provider, kind) VALUES (%s, %s)"\n', [(1, "call_event")]),
        ('Q = "INSERT INTO\\n  call_event(provider) VALUES (%s)"\n', [(1, "call_event")]),
        ('Q = "DELETE FROM call_attempt a USING destination d WHERE d.id = a.destination_id"\n',
         [(1, "call_attempt")]),
        ('cur.copy("COPY destination (campaign_id, number) FROM STDIN")\n', [(1, "destination")]),
        ('Q = ("UPDATE call_attempt "\n     "SET status = %s")\n', [(1, "call_attempt")]),
        ('Q = f"""\nUPDATE {""}call_attempt SET x = 1"""\n', []),  # a table name built at run time: not seen
        ('Q = f"""\nUPDATE call_attempt a SET status = {S}\nWHERE {W}"""\n', [(2, "call_attempt")]),
        ('Q = "update destination set status = %s"\n', [(1, "destination")]),
        ('Q = "TRUNCATE call_event"\n', [(1, "call_event")]),
    ],
)
def test_the_detector_sees_each_form_of_write(source: str, expected: list[tuple[int, str]]) -> None:
    assert table_writes(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        'Q = "SELECT id FROM destination WHERE status = %s FOR UPDATE"\n',
        'Q = "SELECT a.id FROM call_attempt a JOIN destination d ON d.id = a.destination_id"\n',
        'Q = "UPDATE campaign SET state = %s"\n',  # another table
        'Q = "UPDATE destination_archive SET x = 1"\n',  # a name that only begins like one
        '# UPDATE destination SET status = 1\nx = 1\n',  # a comment
        'def f():\n    """Then UPDATE destination SET status back."""\n',  # a docstring
    ],
)
def test_the_detector_ignores_reads_other_tables_comments_and_docstrings(source: str) -> None:
    assert table_writes(source) == []
