"""The baseline route: a Flask app whose one route only enqueues a task.

Served by gunicorn exactly as the API is (``api_command(..., app="bench.bare_app:app")``),
it shows what Flask + gunicorn + one Celery publish cost without any of the
order's MongoDB work. The task goes to a queue that exists (the app refuses
to invent queues) but that no worker in the benchmark consumes; the
benchmark purges it afterwards. Nothing ever runs `bench.noop`.
"""

from __future__ import annotations

import itertools
import os

from flask import Flask, Response, jsonify

from tasks.app import app as celery_app
from tasks.queues import Queue

QUEUE = Queue.SEARCH.value
TASK_NAME = "bench.noop"

app = Flask("kirana-bench-bare")
_seq = itertools.count()


@app.post("/bare")
def bare() -> Response:
    # The body (the same order JSON the API gets) is left unread: gunicorn drains it.
    celery_app.send_task(TASK_NAME, args=[f"{os.getpid()}-{next(_seq)}"], queue=QUEUE)
    resp = jsonify({"queued": True})
    resp.status_code = 202
    return resp
