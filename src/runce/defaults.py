"""Where configuration is looked for and what it says when it says nothing: shared by
:mod:`runce.config` and the command line's fast path (:mod:`runce.cli.quick`), which reads
them without loading the configuration system."""

CONFIG_FILES = ("runce.toml", "pyproject.toml", "runce_config.py")  # in this order, per folder
DEFAULT_STORE_URL = "sqlite:///.runce/runce.db"
DEFAULT_TASKS_DIR = "tasks"
