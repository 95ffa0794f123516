"""The example's jobs: ``runce worker`` imports this module (``worker.handlers``)."""

import runce


@runce.job("email.send", max_attempts=5)
def send_email(params: dict[str, str], ctx: runce.JobContext) -> dict[str, bool]:
    ctx.log.info("sending to %s", params["to"])
    return {"sent": True}
