"""Seed the pricing plans, reporting progress as it goes."""

import json

import runce

PLANS = [
    {"id": "free", "price": 0},
    {"id": "team", "price": 12},
    {"id": "business", "price": 40},
    {"id": "enterprise", "price": 99},
]


def run(ctx: runce.TaskContext) -> None:
    target = ctx.services.data_dir / "plans.json"
    plans = json.loads(target.read_text()) if target.exists() else {}
    for done, plan in enumerate(PLANS, start=1):
        plans[plan["id"]] = plan  # an upsert: re-running changes nothing
        ctx.progress(done, len(PLANS))
    target.write_text(json.dumps(plans, indent=2))
    ctx.log.info("%d plans seeded", len(plans))


task = runce.Task(title="Seed pricing plans", run=run)
