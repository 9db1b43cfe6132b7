"""``outpost``: the operator CLI.  A light package: it talks to the operator API only and
needs ``requests``, ``pyyaml`` and ``protocol`` — never the controller, Flask, SQLAlchemy,
libvirt or the TPM libraries."""
