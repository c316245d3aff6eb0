"""WSGI entry for gunicorn: ``gunicorn api.wsgi:app``."""

from api import create_app
from kirana import logs
from kirana.config import settings

# JSON log lines with the request id (kirana/logs.py), for the API and the ws server.
logs.configure(settings().log_level, buffered=True)

app = create_app()
