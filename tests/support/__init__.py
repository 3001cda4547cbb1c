"""Test support shared by the test packages: paths, raw-data writers, a Redis server, store fixtures."""
