"""Remote access on the node: the agent dials out, never listens.

    grant_check.py  a session's signed grant: signer, node, kind, app, expiry, debug access
    endpoints.py    what a session opens: a VM's serial console (libvirt), a command in a
                    container (podman exec) or on the node (a root shell) through a pty or
                    pipes, a TCP connection to an app's port on its app network
    session.py      one session: the WebSocket to the controller, the two pumps, the
                    grant's expiry, the end report
    service.py      the long-poll for offered sessions and the sessions' threads

Nothing here opens a port: every byte travels over the agent's outbound HTTPS connection
to the controller (``wss://<controller>/api/v1/remote/s/<id>/agent``).
"""

from node_agent.remote.service import RemoteAccess, RemoteContext

__all__ = ["RemoteAccess", "RemoteContext"]
