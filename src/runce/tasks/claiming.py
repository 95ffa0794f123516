"""Keeping the claims one process holds on a parallel backfill's key ranges
(docs/backfills.md#ranges-on-several-hosts): renewed every third of their lease from a
background thread, and known lost once a renewal is refused or none succeeded for a whole
lease. The range's loop asks :meth:`ClaimKeeper.check` at every batch boundary; the store's
fencing (every checkpoint conditional on the claim's token) is what makes a late holder
harmless, the keeper only makes it stop sooner.
"""

from __future__ import annotations

import threading
import time

from runce.domain.locks import Owner
from runce.domain.tasks import RangeClaim
from runce.errors import ClaimLost, StoreError
from runce.stores.base import RangeClaims
from runce.tasks.lease import keep_stop_signals_off


class ClaimKeeper:
    def __init__(self, claims: RangeClaims, ttl: float) -> None:
        self._claims = claims
        self._ttl = ttl
        self._guard = threading.Lock()
        self._held: dict[str, tuple[RangeClaim, float]] = {}  # token -> (claim, last renewal)
        self._lost: dict[str, str] = {}  # token -> why
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runce-claims", daemon=True)

    def __enter__(self) -> ClaimKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def hold(self, claim: RangeClaim) -> None:
        with self._guard:
            self._held[claim.token] = (claim, time.monotonic())

    def renewed(self, claim: RangeClaim) -> None:
        """A checkpoint saved under the claim extended it too."""
        with self._guard:
            if claim.token in self._held:
                self._held[claim.token] = (claim, time.monotonic())

    def drop(self, claim: RangeClaim) -> None:
        with self._guard:
            self._held.pop(claim.token, None)
            self._lost.pop(claim.token, None)

    def check(self, claim: RangeClaim) -> None:
        """Raise :class:`ClaimLost` when the claim is known to be gone."""
        with self._guard:
            why = self._lost.get(claim.token)
        if why is not None:
            raise ClaimLost(f"range {claim.part} of {claim.task_id}: {why}")

    def _loop(self) -> None:
        keep_stop_signals_off()
        interval = max(self._ttl / 3, 0.05)
        while not self._stop.wait(interval):
            with self._guard:
                held = [claim for claim, _ in self._held.values()]
            for claim in held:
                self._renew(claim)

    def _renew(self, claim: RangeClaim) -> None:
        try:
            kept = self._claims.renew_claim(claim)
        except (StoreError, OSError) as exc:
            with self._guard:
                entry = self._held.get(claim.token)
                if entry is not None and time.monotonic() - entry[1] >= self._ttl:
                    why = f"could not renew its claim for {self._ttl:g}s ({exc})"
                    self._lost[claim.token] = why
            return
        except BaseException as exc:  # a bug: never go on without knowing the claim is kept
            with self._guard:
                self._lost[claim.token] = f"renewing its claim failed unexpectedly ({exc!r})"
            return
        with self._guard:
            if claim.token not in self._held:
                return
            if kept:
                self._held[claim.token] = (claim, time.monotonic())
            else:
                self._lost[claim.token] = "its claim expired and was taken over by another process"


def claimer_of(owner: Owner) -> str:
    """How a claim names its process, for ``status``: ``host pid N``, after the owner's label
    when it says more than the host."""
    where = f"{owner.host} pid {owner.pid}"
    return where if owner.label in ("", owner.host) else f"{owner.label} ({where})"
