"""Create the message queues the service expects (here: one folder per queue)."""

import runce

QUEUES = ("emails", "invoices", "webhooks")


@runce.task(title="Create message queues")
def run(ctx: runce.TaskContext) -> None:
    root = ctx.services.data_dir / "queues"
    for name in QUEUES:
        # exist_ok: safe to run again if an earlier attempt was interrupted half way
        (root / name).mkdir(parents=True, exist_ok=True)
        ctx.log.info("queue %s ready", name)
