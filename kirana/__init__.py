"""Kirana's domain: orders, catalog, stock and the stores' own words.

Nothing in this package imports Flask or Celery; the API and the tasks are
thin layers over it.
"""
