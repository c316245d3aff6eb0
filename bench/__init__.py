"""`make bench`: accept rate and latency of POST /api/v1/orders beside a bare enqueue route.

Everything runs on private servers in a temporary directory: a redis-server
and nx-27017 on free ports, the real API under gunicorn, one orders-pool
worker, and `bench.bare_app` (a route that only enqueues) under gunicorn with
the same settings as the API. See `python -m bench --help`.
"""
