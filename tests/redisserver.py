"""The throwaway redis-server the tests start: it lives in bench/ (the benchmark needs it and must not import tests)."""

from bench.redisserver import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
