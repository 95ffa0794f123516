"""Runs once per environment, whichever replica starts first."""

import os

import runce


@runce.task(title="Open the shop")
def run(ctx: runce.TaskContext) -> None:
    ctx.services.record(f"opened by {os.getpid()}")
