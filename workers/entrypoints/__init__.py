"""Entry points: the `dialer` CLI (Typer), the HTTP API (FastAPI) and the demo. Thin shells over
campaigns/ (the domain) and workers/ (the engine); neither of those imports this package
(tests/test_layers.py)."""

# The composition root: the adapters declare which provider kinds accounts accept (campaigns.accounts
# cannot import the engine), so every entry point registers them before anything else runs.
import workers.providers.registry  # noqa: F401
