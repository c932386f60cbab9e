"""``make bench``: the performance benchmark of the bridge (see docs/performance.md).

Not part of the package or of ``make test``: it reports numbers, the tests check behaviour.
"""
