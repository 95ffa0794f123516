"""Runs: a durable background-job queue on the same stores as once tasks."""
