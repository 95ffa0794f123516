"""Once tasks: files in ``tasks_dir`` applied once per environment."""
