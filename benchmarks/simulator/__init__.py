"""A node simulator: tens of thousands of simulated Outpost nodes in one asyncio process,
each with its own device identity, real signed envelopes and EVE's timers, reporting
what the nodes see (requests/s by kind, latency percentiles, errors by kind, how long an
operator's change takes to reach each node).

    identities.py  device keys + self-signed certs, cached on disk; bulk-enrolment manifest
    transport.py   keep-alive HTTPS (aiohttp) with the pinned root, timed and classified
    node.py        one node's requests: register, attest, config, info, metrics
    fleet.py       enrolment, timers with jitter, operator changes, stop
    operator.py    the operator API calls a simulation needs
    runner.py      a fleet from an onboarding bundle; the steady-state run
    stats.py       counters, percentiles, tables
    procstat.py    CPU and RSS of processes from /proc

Run ``python -m benchmarks.simulator --help``.
"""
