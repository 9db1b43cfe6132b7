"""``outpost``: the operator CLI.  A light package: it talks to the operator API only and
needs ``pyyaml``, ``pydantic``, ``websockets`` and ``protocol`` (HTTP is the standard
library's) — never the controller, Flask, SQLAlchemy, libvirt or the TPM libraries."""
