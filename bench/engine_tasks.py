"""Kirana's no-op task for `python -m bench.engine`, loaded into the real app via KIRANA_EXTRA_TASK_MODULES.

Named `orders.noop`, so it is routed to the orders queue and run by the orders
pool exactly as configured in workers/pools.py, through tasks.base.KiranaTask
(redelivery count, dead letters on failure) and every signal receiver of tasks/.
"""

from __future__ import annotations

from tasks.app import app
from tasks.base import KiranaTask


@app.task(name="orders.noop", base=KiranaTask)
def noop(seq: int) -> None:
    return None
