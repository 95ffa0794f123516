"""runce inside the frameworks services run on: :mod:`runce.contrib.asgi` (FastAPI,
Starlette) and :mod:`runce.contrib.django`. Each imports its framework only when used."""
