"""Celery tasks: one module per kind of work, each a few lines around kirana."""
