"""What the tests (and bench/api_load.py) share besides fixtures: free loopback ports, servers
started for a test and stopped after it, reading server-sent events, and the guard that
keeps the tests' sockets on loopback.

Fixtures stay in tests/conftest.py; these are plain functions. The modules import each other
relatively, so `support.x` (the tests) and `tests.support.x` (bench/) are the same code.
"""
