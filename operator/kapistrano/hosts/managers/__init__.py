"""Service managers: how each kind of service is stopped, started, reloaded and inspected on a host.

Each module splits its work pyinfra-style: pure functions build the remote command lines from what
is known, pure functions parse their output, and small async functions run them on a Runner.
"""
