"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per daemon;
under ``CI=true`` a skip is a failure (tests/ci_skips.py); what integration tests print
is repeated in the terminal summary (tests/figures.py); ``make test`` runs two workers
(tests/parallel.py)."""

pytest_plugins = [
    "tests.ci_skips",
    "tests.figures",
    "tests.parallel",
    "tests.fixtures.images",
    "tests.fixtures.libvirt_daemon",
    "tests.fixtures.private_libvirt",
    "tests.fixtures.podman_engine",
    "tests.fixtures.controller_server",
    "tests.fixtures.swtpm",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.netns",
    "tests.fixtures.inference",
]
