"""The soak's judgements: which process is which, and when a queue grows through a run."""

from __future__ import annotations

from bench import soak


def test_each_process_of_make_run_gets_its_kind() -> None:
    assert soak.kind_of(["/x/python", "-m", "celery", "-A", "tasks.app", "worker", "-Q", "orders", "-c", "2"]) \
        == "worker orders"
    assert soak.kind_of(["/x/python", "-m", "celery", "-A", "tasks.app", "beat"]) == "beat"
    assert soak.kind_of(["redis-server", "127.0.0.1:6390"]) == "redis-server"
    assert soak.kind_of(["/x/python", "-m", "tasks.outbox_relay"]) == "outbox relay"
    assert soak.kind_of(["/x/gunicorn", "-k", "gevent", "api.wsgi:app"]) == "ws (gevent)"
    assert soak.kind_of(["/x/gunicorn", "-c", "stack/gunicorn_conf.py", "api.wsgi:app"]) == "api (gunicorn)"


def test_a_queue_grows_only_when_its_last_third_stays_above_its_first_thirds_peak() -> None:
    assert soak._grows([0, 10, 40, 120, 300, 500])
    assert not soak._grows([0, 200, 40, 120, 30, 90])  # busy but bounded
    assert not soak._grows([0, 10, 20, 30, 40, 45])  # under the 50-message floor: noise
