"""Backup and restore throughput for one generated collection, beside the disk's raw sequential write speed.

Runs on its own nx-27017 (fresh port and data dir under the run's temporary
directory, on the same filesystem as the backup), so the figures are the
embedded server's (this phase has no switch for a real MongoDB). Order of the run: disk (write + fsync a file
of --disk-mb), generate --backup-docs order-shaped documents, back up
(kirana.backups.dump), restore into a second database (kirana.backups.restore).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pymongo

from stack import servers

CHUNK = 8 << 20
INSERT_BATCH = 5000


def disk_write_mb_s(folder: Path, megabytes: int) -> tuple[float, float]:
    """(MB/s, seconds) writing `megabytes` of incompressible data sequentially, fsync included."""
    path = folder / "disk-probe.bin"
    chunk = os.urandom(CHUNK)
    total = megabytes << 20
    started = time.perf_counter()
    with path.open("wb") as f:
        written = 0
        while written < total:
            f.write(chunk[: min(CHUNK, total - written)])
            written += min(CHUNK, total - written)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return megabytes / seconds, seconds


def _order(i: int, rng: random.Random) -> dict[str, Any]:
    lines = [{"sku": f"SKU-{rng.randrange(2000):04d}", "qty": rng.randrange(1, 5),
              "price_paise": rng.randrange(500, 90000)} for _ in range(rng.randrange(1, 6))]
    return {"_id": f"ord_{i:09d}", "idempotency_key": f"auto:ord_{i:09d}", "store_id": f"store_{i % 40}",
            "customer_id": f"usr_{rng.randrange(100_000)}",
            "status": rng.choice(["confirmed", "delivered", "cancelled"]),
            "lines": lines, "total_paise": sum(x["qty"] * x["price_paise"] for x in lines),
            "created_at_ms": 1_760_000_000_000 + i * 1000, "updated_at_ms": 1_760_000_000_000 + i * 1000 + 5000}


def run_phase(tmp: Path, documents: int, disk_mb: int, seed: int = 1) -> int:
    from kirana.backups import dump, restore

    folder = tmp / "backups-phase"
    folder.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    with servers.Server("mongo-backups", servers.mongo_command(port, folder), port, log=folder / "mongo.out"):
        client: pymongo.MongoClient = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", tz_aware=True)
        source, target = client["bench_backup"], client["bench_restore"]

        disk_mb_s, disk_s = disk_write_mb_s(folder, disk_mb)
        print(f"[bench] disk: {disk_mb} MB written + fsync in {disk_s:.1f} s", flush=True)

        rng = random.Random(seed)
        started = time.perf_counter()
        for first in range(0, documents, INSERT_BATCH):
            source["orders"].insert_many([_order(i, rng) for i in range(first, min(first + INSERT_BATCH, documents))],
                                         ordered=False)
        source["orders"].create_index([("store_id", 1), ("created_at_ms", 1)])
        generate_s = time.perf_counter() - started
        print(f"[bench] generated {documents} documents in {generate_s:.1f} s", flush=True)

        started = time.perf_counter()
        written = dump.dump(source, folder / "out", "bench")
        backup_s = time.perf_counter() - started
        entry = written["collections"][0]
        bson_mb = entry["bson_bytes"] / 1e6
        gz_mb = entry["data"]["bytes"] / 1e6

        started = time.perf_counter()
        restored = restore.restore(folder / "out" / "bench", target)
        restore_s = time.perf_counter() - started
        same = restore.content_sha256(target, "orders") == (documents, entry["content_sha256"])
        client.close()

    print()
    print(f"Backups: one collection of {documents:,} order documents ({bson_mb:.0f} MB of BSON, "
          f"{gz_mb:.0f} MB gzipped) on nx-27017")
    print(f"{'':<28}{'seconds':>10}{'docs/s':>12}{'MB/s (BSON)':>14}{'MB/s (disk)':>14}")
    print(f"{'disk: sequential write':<28}{disk_s:>10.1f}{'':>12}{'':>14}{disk_mb_s:>14.0f}")
    print(f"{'generate (insert_many)':<28}{generate_s:>10.1f}{documents / generate_s:>12,.0f}"
          f"{bson_mb / generate_s:>14.1f}{'':>14}")
    print(f"{'backup (dump to .bson.gz)':<28}{backup_s:>10.1f}{documents / backup_s:>12,.0f}"
          f"{bson_mb / backup_s:>14.1f}{gz_mb / backup_s:>14.1f}")
    print(f"{'restore (from .bson.gz)':<28}{restore_s:>10.1f}{restored['orders'] / restore_s:>12,.0f}"
          f"{bson_mb / restore_s:>14.1f}{gz_mb / restore_s:>14.1f}")
    print(f"restored copy identical to the source (count and SHA-256): {'yes' if same else 'NO'}")
    return 0 if same else 1
