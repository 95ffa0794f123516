"""The shop's jobs, named in ``worker.handlers``."""

from __future__ import annotations

from pydantic import BaseModel
from shop_services import Services

import runce


class Shipment(BaseModel):
    order: int


@runce.job("shop.ship")
def ship(params: Shipment, ctx: runce.JobContext) -> None:
    services: Services = ctx.services
    services.record(f"shipped {params.order}")
