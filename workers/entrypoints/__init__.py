"""Entry points: the `dialer` CLI (Typer), the HTTP API (FastAPI) and the demo. Thin shells over
campaigns/ (the domain) and workers/ (the engine); nothing else imports this package."""
