"""The README's "Dry run on the simulator" works as written (issue 22): its `sh` blocks run in order, as one
shell session, from a clean copy of the repository with the installed `dialer`; the block of lines meant
for terminals of their own ("# each in a terminal of its own") runs as background processes, stopped at the
end. Real Postgres, Redis, Celery, API, beat and simulator.

The test's own environment gives only where the state lives (a database of its own, which the README's
`dialer db init` creates, and a Redis prefix of its own); DIALER_ENVIRONMENT, DIALER_SECRET_KEY and
DIALER_PUBLIC_URL are removed, so what the README's `.env` says is what the processes run with. Its ports
8000 and 8765 become free ones, as other tests may hold those.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import ADMIN_URL

pytestmark = pytest.mark.timeout(150)

REPO = Path(__file__).resolve().parent.parent
HEADING = "### Dry run on the simulator"
TERMINALS = "# each in a terminal of its own"
README_PORTS = ("8000", "8765")  # the API's and the simulator's, in the README's commands
SCRIPT_TIMEOUT_S = 100
# Settings the README's .env must supply itself: a value left in the test's environment would win over it.
FROM_THE_README = ("DIALER_ENVIRONMENT", "DIALER_SECRET_KEY", "DIALER_PUBLIC_URL",
                   "DIALER_PREVIOUS_SECRET_KEYS", "DIALER_PROVIDER_TOKEN")
# A bash loop the test puts after the terminals' block, where a reader waits until the processes are up.
WAIT_PORT = ('wait_port() { for _ in $(seq 150); do '
             '(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; '
             'echo "nothing listens on port $1" >&2; return 1; }')


def dry_run_section(readme: str) -> str:
    """The text under the dry-run heading, up to the next heading of its level or above (outside code)."""
    lines = readme.splitlines()
    start = lines.index(HEADING)
    section, fenced = [], False
    for line in lines[start + 1:]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,3} ", line):
            break
        section.append(line)
    return "\n".join(section)


def sh_blocks(section: str) -> list[str]:
    """The section's ```sh blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def session_script(blocks: list[str], logs: Path) -> str:
    """One bash script: foreground blocks as written; each line of a terminals' block in the background,
    its output in a log, then a wait until every port its lines name listens."""
    parts = ["set -euo pipefail", WAIT_PORT]
    for block in blocks:
        if not block.startswith(TERMINALS):
            parts.append(block)
            continue
        commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        for n, command in enumerate(commands):
            parts.append(f"{command} > {logs / f'terminal-{n}.log'} 2>&1 &")
        parts += [f"wait_port {port}" for port in re.findall(r"--port (\d+)", block)]
    return "\n".join(parts) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_clone(target: Path) -> Path:
    """The repository's tracked files, as a clone has them (no .env, no .venv, no caches)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def stop_group(pgid: int) -> None:
    """Stop the session's process group (the shell and everything it left in the background)."""
    for sig, patience in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture()
def own_state(database_url: str, redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    """A database URL nobody has created yet (the README's `dialer db init` does), an empty Redis prefix."""
    name = f"{database_url.rsplit('/', 1)[1]}_readme"
    url = f"{os.environ['DIALER_DATABASE_URL'].rsplit('/', 1)[0]}/{name}"
    prefix = f"{os.environ['DIALER_REDIS_PREFIX']}-readme"
    try:
        yield url, prefix
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(key)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_readme_dry_run_completes_a_five_number_campaign_as_written(
        tmp_path: Path, own_state: tuple[str, str]) -> None:
    section = dry_run_section((REPO / "README.md").read_text())
    for port in README_PORTS:
        assert re.search(rf"\b{port}\b", section), f"the dry run names no port {port}: update this test"
    ports = {port: str(free_port()) for port in README_PORTS}
    section = re.sub(r"\b(8000|8765)\b", lambda m: ports[m.group(1)], section)
    blocks = sh_blocks(section)
    assert sum(block.startswith(TERMINALS) for block in blocks) == 1 and len(blocks) >= 3, blocks

    clone = clean_clone(tmp_path / "clone")
    logs = tmp_path / "logs"
    logs.mkdir()
    script = tmp_path / "dry-run.sh"
    script.write_text(session_script(blocks, logs))
    database_url, prefix = own_state
    env = {key: value for key, value in os.environ.items() if key not in FROM_THE_README}
    env.update(DIALER_DATABASE_URL=database_url, DIALER_REDIS_PREFIX=prefix,
               # Not the README's business: keeps this worker off the metrics ports other tests read.
               DIALER_WORKER_METRICS_PORT="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    transcript = tmp_path / "transcript.log"

    started = time.monotonic()
    with open(transcript, "wb") as out:
        shell = subprocess.Popen(["bash", str(script)], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            code = shell.wait(timeout=SCRIPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        stop_group(shell.pid)
        if shell.poll() is None:
            shell.wait()
    took = time.monotonic() - started

    def what_happened() -> str:
        parts = [f"--- transcript\n{transcript.read_text(errors='replace')[-4000:]}"]
        parts += [f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                  for log in sorted(logs.iterdir())]
        return "\n".join(parts)

    assert code == 0, f"the dry run exited {code} after {took:.0f} s\n{what_happened()}"
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        states = conn.execute("SELECT state FROM campaign ORDER BY id").fetchall()
    assert states == [("completed",)], what_happened()

    with open(clone / "dry-run" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["customer_id"] for row in rows] == [f"C-100{n}" for n in range(1, 6)], rows
    assert all(row["request_uuid"] and row["outcome"] for row in rows), rows
    assert {row["status"] for row in rows} <= {"done", "failed"}, rows
