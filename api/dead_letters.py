"""/api/v1/dead-letters: work that gave up; list, show, replay, discard (ops)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.problems import Problem
from api.schemas import query_int
from api.security import client_address, principal, requires
from kirana import audit, db, dead_letters
from tasks import audit as audit_task
from tasks.reliability import replay as replay_letter

bp = Blueprint("dead_letters", __name__, url_prefix="/api/v1/dead-letters")


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
def index() -> Response:
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    offset = query_int(request, "offset", 0, minimum=0, maximum=10_000_000)
    items, total = dead_letters.query(db.database(), task=request.args.get("task") or None,
                                      status=request.args.get("status") or None,
                                      order_id=request.args.get("order_id") or None, limit=limit, offset=offset)
    return jsonify({"items": items, "total": total, "limit": limit, "offset": offset})


@bp.get("/<letter_id>")
@requires("dead_letters:manage")
def show(letter_id: str) -> Response:
    return jsonify(dead_letters.view(_letter(letter_id), full=True))


@bp.post("/<letter_id>/replay")
@requires("dead_letters:manage")
def replay(letter_id: str) -> tuple[Response, int]:
    _letter(letter_id)
    try:
        done = replay_letter(letter_id, by=principal().user_id)
    except dead_letters.AlreadyClosed as exc:
        raise _closed(exc) from None
    _audit("dead_letter.replayed", letter_id, task_id=done["replayed_as"], task=done["task"])
    return jsonify(dead_letters.view(done)), 202


@bp.post("/<letter_id>/discard")
@requires("dead_letters:manage")
def discard(letter_id: str) -> Response:
    _letter(letter_id)
    try:
        done = dead_letters.discard(db.database(), letter_id, by=principal().user_id)
    except dead_letters.AlreadyClosed as exc:
        raise _closed(exc) from None
    _audit("dead_letter.discarded", letter_id, task=done["task"])
    return jsonify(dead_letters.view(done))
