"""Deployment files (HAProxy config template, systemd units) and their renderer."""
