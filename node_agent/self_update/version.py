"""The running agent's version; a release bundle carries its own copy of this file."""

AGENT_VERSION = "0.1.0"
