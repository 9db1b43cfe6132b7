"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per daemon."""

pytest_plugins = [
    "tests.fixtures.images",
    "tests.fixtures.libvirt_daemon",
    "tests.fixtures.podman_engine",
    "tests.fixtures.controller_server",
    "tests.fixtures.swtpm",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.netns",
    "tests.fixtures.inference",
]
