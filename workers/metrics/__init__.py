"""Metrics: Prometheus counters and histograms of the engine, the state read at scrape time, and each
worker's endpoint."""
