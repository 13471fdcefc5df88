"""syncjob: keep registry and git credentials present, current and tidy in every build namespace."""

__version__ = "0.1.0"
