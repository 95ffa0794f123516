"""Warm the search cache: an async task that skips itself when the work is already there."""

import asyncio

import runce


def already_done(ctx: runce.TaskContext) -> bool:
    return (ctx.services.data_dir / "cache.txt").exists()


@runce.task(title="Warm the search cache", already_done=already_done)
async def run(ctx: runce.TaskContext) -> None:
    await asyncio.sleep(0.05)  # stands for real I/O
    (ctx.services.data_dir / "cache.txt").write_text("warm\n")
