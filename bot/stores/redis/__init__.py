"""The Redis implementations of the stores (REDIS_URL), shared by every dyno, with their shared helpers: the
connection, automatic pipelining and scripts. Failures are raised; stores/fallback.py decides what happens then."""
