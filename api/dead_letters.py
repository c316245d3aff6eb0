"""/api/v1/dead-letters: work that gave up; list, show, replay, discard (ops). /api/v1/dead-letter-actions:
replay or discard many at once, by filter."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.contract import documented
from api.problems import Problem, unavailable
from api.responses import BulkDeadLetters, DeadLetter, DeadLetterPage
from api.schemas import BulkDeadLettersIn, DeadLettersQuery, parse_body, parse_query
from api.security import client_address, principal, requires
from kirana import audit, db, dead_letters
from kirana.clock import now_ms
from kirana.config import settings
from tasks import audit as audit_task
from tasks.backups import replay_dead_letters
from tasks.reliability import BROKER_DOWN
from tasks.reliability import replay as replay_letter

bp = Blueprint("dead_letters", __name__, url_prefix="/api/v1/dead-letters")
# A bulk action is a resource of its own: under /dead-letters/ its path would be taken for a letter's id.
actions = Blueprint("dead_letter_actions", __name__, url_prefix="/api/v1/dead-letter-actions")


def _letter(letter_id: str) -> dict:
    try:
        return dead_letters.get(db.database(), letter_id)
    except dead_letters.NotFound:
        raise Problem(404, "not-found", "Not Found", f"no dead letter {letter_id!r}") from None


def _closed(exc: dead_letters.AlreadyClosed) -> Problem:
    return Problem(409, "dead-letter-closed", "Dead letter already closed", str(exc), status_now=exc.status)


def _audit(action: str, letter_id: str, **detail: object) -> None:
    audit_task.send(audit.new_event(action, actor=principal().user_id, target=letter_id, detail=detail or None,
                                    ip=client_address()))


@bp.get("")
@requires("dead_letters:manage")
@documented(query=DeadLettersQuery, ok={200: DeadLetterPage}, tags=("operations",))
def index() -> Response:
    """Dead letters: work that gave up."""
    q = parse_query(request, DeadLettersQuery)
    items, total = dead_letters.query(db.database(), task=q.task, status=q.status, order_id=q.order_id,
                                      limit=q.limit, offset=q.offset)
    return jsonify({"items": items, "total": total, "limit": q.limit, "offset": q.offset})


@actions.post("")
@requires("dead_letters:manage")
@documented(body=BulkDeadLettersIn, ok={200: BulkDeadLetters, 202: BulkDeadLetters}, tags=("operations",))
def bulk() -> tuple[Response, int]:
    """Replay or discard every open dead letter matching the filters; a dry run counts and samples them.

    A replay is paced (`per_second`) by a task on the backups pool and takes the letters that
    failed before this request; a discard is one write. One audit entry per action.
    """
    body = parse_body(request, BulkDeadLettersIn)
    selection = dead_letters.Selection(body.task, body.exc_type, body.queue, body.failed_from_ms,
                                       body.failed_until_ms).as_of(now_ms())
    database = db.database()
    count, sample = dead_letters.preview(database, selection)
    answer = {"action": body.action, "dry_run": body.dry_run, "selection": selection.describe(), "count": count,
              "sample": sample}
    if body.dry_run:
        return jsonify(answer), 200
    if body.action == "discard":
        answer["count"] = dead_letters.discard_selected(database, selection, by=principal().user_id)
        _audit(dead_letters.BULK_DISCARDED, "dead_letters", selection=selection.describe(), count=answer["count"])
        return jsonify(answer), 200
    pace = body.per_second or settings().dead_letter_replay_per_s
    try:
        job = replay_dead_letters.delay(selection.describe(), principal().user_id, pace)
    except BROKER_DOWN as exc:  # nothing was replayed: ask again once the broker is back
        raise unavailable("redis", exc) from None
    _audit(dead_letters.BULK_REPLAYED, "dead_letters", selection=selection.describe(), count=count,
           per_second=pace, job_id=job.id)
    return jsonify({**answer, "job_id": job.id, "per_second": pace}), 202


@bp.get("/<letter_id>")
@requires("dead_letters:manage")
@documented(ok={200: DeadLetter}, tags=("operations",))
def show(letter_id: str) -> Response:
    """One dead letter, with its traceback."""
    return jsonify(dead_letters.view(_letter(letter_id), full=True))


@bp.post("/<letter_id>/replay")
@requires("dead_letters:manage")
@documented(ok={202: DeadLetter}, errors=(409,), tags=("operations",))
def replay(letter_id: str) -> tuple[Response, int]:
    """Enqueue the task again (once)."""
    _letter(letter_id)
    try:
        done = replay_letter(letter_id, by=principal().user_id)
    except dead_letters.AlreadyClosed as exc:
        raise _closed(exc) from None
    _audit("dead_letter.replayed", letter_id, task_id=done["replayed_as"], task=done["task"])
    return jsonify(dead_letters.view(done)), 202


@bp.post("/<letter_id>/discard")
@requires("dead_letters:manage")
@documented(ok={200: DeadLetter}, errors=(409,), tags=("operations",))
def discard(letter_id: str) -> Response:
    """Close the dead letter without running it."""
    _letter(letter_id)
    try:
        done = dead_letters.discard(db.database(), letter_id, by=principal().user_id)
    except dead_letters.AlreadyClosed as exc:
        raise _closed(exc) from None
    _audit("dead_letter.discarded", letter_id, task=done["task"])
    return jsonify(dead_letters.view(done))
