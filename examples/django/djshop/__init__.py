"""A tiny Django project using runce: its store is the project's database."""
