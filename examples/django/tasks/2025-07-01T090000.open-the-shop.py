"""Applied once per environment by ``python manage.py runce run``."""

import runce


@runce.task(title="Open the shop")
def run(ctx: runce.TaskContext) -> None:
    ctx.services.record("opened")
