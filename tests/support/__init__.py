"""What the tests (and bench/api_load.py) share besides fixtures: free loopback ports, servers
started for a test and stopped after it, and reading server-sent events.

Fixtures stay in tests/conftest.py; these are plain functions. The modules import each other
relatively, so `support.x` (the tests) and `tests.support.x` (bench/) are the same code.
"""
