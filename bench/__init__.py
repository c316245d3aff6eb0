"""`make bench`: accept rate and latency of POST /api/v1/orders beside a bare enqueue route,
then webhook ingest (POST /webhooks/razorpay with signed, distinct Razorpay events).

Everything runs on private servers in a temporary directory: a redis-server
and nx-27017 on free ports, the real API under gunicorn, one orders-pool
worker and `bench.bare_app` (a route that only enqueues) under gunicorn with
the same settings as the API for the orders phases, one webhooks-pool worker
for the webhooks phase. `--only orders|webhooks|all` picks the phases. See
`python -m bench --help`.
"""
