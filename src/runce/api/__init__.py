"""runce's HTTP service (``runce serve``) and its clients (``client``, ``async_client``).

Not to be confused with :mod:`runce.runs.library`, the library's entry points for runs: this
package puts those entry points on the wire (``app``, ``routes_*``), checks bearer tokens
(``auth``), and holds the wire models both sides share (``schemas``). FastAPI, uvicorn and
httpx come with the ``nurv-runce[api]`` extra and are imported only by these modules; the
clients need httpx alone (``nurv-runce[client]``).
"""
