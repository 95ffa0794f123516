"""The domain's records: what runce keeps and passes around, as plain frozen data.

This is the ground floor of the house. Every other layer (the store contract and its
backends, once tasks, runs, the HTTP service, the command line) speaks in these records, and
this package imports nothing of runce's beyond :mod:`runce.errors`, so any layer may use it.

* :mod:`runce.domain.runs`: runs of the job queue and their state machine.
* :mod:`runce.domain.tasks`: once tasks' history, applied records, checkpoints, controls.
* :mod:`runce.domain.locks`: who holds the global lock, and the lease they hold it by.
* :mod:`runce.domain.schema`: where a store's schema stands.
* :mod:`runce.domain.schedules`: cron schedules as declared and as stored.
* :mod:`runce.domain.tokens`: the HTTP API's bearer tokens.
"""
