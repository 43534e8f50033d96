"""Helpers that start real servers (redis-server, the cache server) for benchmarks and tests."""
