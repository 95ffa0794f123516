"""One module per implementation.

Each names itself (``NAME``, ``BACKEND``, ``PACKAGE``), may describe its settings
(``SETTINGS``, echoed into the JSON lines), and defines one function per measurement it
supports, each taking a :class:`~harness.workload.Workload` and returning a flat dict of
results (see ``harness.stats``): ``enqueue_single``, ``enqueue_batched``, ``process``,
``latency``, and for some ``memory``, ``ceiling``, ``once_run``, ``once_status``,
``startup``. A measurement an implementation cannot do returns
``{"supported": False, "reason": ...}``. Which virtualenv runs it is said in
``harness/plan.py``.
"""
