"""Guards on the Celery configuration: names, routes, schedule, delivery guarantees."""

from __future__ import annotations

import fnmatch

from beat_schedules import SCHEDULE
from tasks.app import app
from tasks.queues import DELIVERY, ROUTES, Queue, queue_of, transport_options
from workers.pools import POOLS


def _ours() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def _queue_of(task_name: str) -> str | None:
    for pattern, route in ROUTES.items():
        if fnmatch.fnmatch(task_name, pattern):
            return route["queue"]
    return None


def test_every_task_module_imports_and_registers_its_tasks() -> None:
    app.loader.import_default_modules()
    assert {"orders.process", "orders.requeue_stuck", "audit.record", "notifications.deliver"} <= set(app.tasks)


def test_every_task_is_routed_to_a_queue_a_pool_reads() -> None:
    app.loader.import_default_modules()
    read = {q.value for pool in POOLS for q in pool.queues}
    for name in _ours():
        assert _queue_of(name) in read, f"{name} would land in no pool's queue"


def test_every_scheduled_task_is_registered_and_expires_before_its_next_run() -> None:
    app.loader.import_default_modules()
    for entry_name, entry in SCHEDULE.items():
        assert entry["task"] in app.tasks, f"{entry_name} schedules unknown task {entry['task']}"
        schedule = entry["schedule"]
        if isinstance(schedule, float):
            interval = schedule
        else:  # a crontab: the shortest gap between two of its minutes
            minutes = sorted(schedule.minute)
            gaps = [b - a for a, b in zip(minutes, [*minutes[1:], minutes[0] + 60], strict=True)]
            interval = 60.0 * min(gaps)
        assert 0 < entry["options"]["expires"] <= interval, entry_name
        assert entry_name == entry_name.lower() and "_" not in entry_name, "kebab-case entry names"


def test_tasks_are_named_explicitly_and_carry_time_limits() -> None:
    app.loader.import_default_modules()
    for name, task in _ours().items():
        assert task.__module__.startswith("tasks."), name
        assert "." in name and not name.startswith("tasks."), f"{name} is not an explicit stable name"
        assert task.soft_time_limit and task.time_limit and task.soft_time_limit < task.time_limit, name


def test_messages_survive_a_dying_worker_and_are_json() -> None:
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert conf.task_create_missing_queues is False


def test_each_queues_visibility_timeout_outlasts_its_tasks_and_their_retry_countdowns() -> None:
    for name, task in _ours().items():
        queue = queue_of(name)
        assert queue is not None, name
        visibility = DELIVERY[queue].visibility_timeout_s
        assert visibility > (task.time_limit or app.conf.task_time_limit), name
        assert visibility > task.retry_backoff_max + (task.time_limit or 0), name


def test_a_worker_of_a_pool_takes_its_queues_own_unacked_keys() -> None:
    orders = transport_options(Queue.ORDERS, socket_timeout_s=1)
    backups = transport_options(Queue.BACKUPS, socket_timeout_s=1)
    assert orders["unacked_index_key"] != backups["unacked_index_key"]
    assert orders["visibility_timeout"] < backups["visibility_timeout"]
    assert orders["unacked_restore_throttle"] == 1


def test_transient_errors_only_are_retried_with_backoff_and_jitter() -> None:
    import pymongo.errors

    process = app.tasks["orders.process"]
    assert pymongo.errors.AutoReconnect in process.autoretry_for
    assert ValueError not in process.autoretry_for and Exception not in process.autoretry_for
    assert process.retry_backoff and process.retry_jitter and process.max_retries


def test_every_queue_is_declared_and_has_exactly_one_pool() -> None:
    declared = {q.name for q in app.conf.task_queues}
    assert declared == {q.value for q in Queue}
    served = [q.value for pool in POOLS for q in pool.queues]
    assert sorted(served) == sorted(q.value for q in Queue)
