import runce


def already_done(ctx: runce.TaskContext) -> bool:
    """Optional: True when the work is already there (recorded as skipped, counts as applied)."""
    return ctx.services.queues.exists("emails")


@runce.task(title="Create the message queues", already_done=already_done)
def run(ctx: runce.TaskContext) -> None:
    for name in ("emails", "invoices"):
        ctx.services.queues.create(name, exist_ok=True)
        ctx.log.info("queue %s ready", name)
