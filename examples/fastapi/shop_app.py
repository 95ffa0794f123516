"""A FastAPI app that applies its once tasks on start-up, runs an embedded worker, and
enqueues runs from its endpoints.

    uvicorn shop_app:app --port 8000
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, FastAPI
from shop_jobs import Shipment, ship
from shop_services import Services

import runce
from runce.contrib import asgi

app = FastAPI(lifespan=asgi.lifespan(worker=True, wait=120))


@app.post("/orders/{order}/ship", status_code=202)
async def ship_order(order: int) -> dict[str, str]:
    # One key per order: a client retrying the request gets the same run.
    run = await ship.alater(Shipment(order=order), idempotency_key=f"ship-{order}")
    return {"run": run.id}


@app.get("/runs/{run_id}")
async def run_state(run_id: str) -> dict[str, str]:
    return {"state": (await runce.aget_run(run_id)).state}


@app.get("/health")
def health(services: Annotated[Services, Depends(asgi.services)]) -> dict[str, object]:
    return {"pid": os.getpid(), "ledger": str(services.ledger)}
