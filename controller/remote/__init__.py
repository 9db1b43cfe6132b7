"""Remote access: consoles, exec, node shells and port-forwards relayed through the
controller over the node's own outbound connection, under time-limited grants, recorded.

    policy.py      the fleet's rules (approval sites, caps, idle timeout, longest grant)
    grants.py      create / approve / revoke grants; the signed claims the agent checks
    sessions.py    open a session under a grant, the two sides attaching, end, sweep
    recording.py   asciicast v2, written before the operator sees it; export
    wakeups.py     waking the node's session poll and the relays (the config notifier)
    websocket.py   a WebSocket over the server's socket (websockets' sans-I/O protocol)
    rendezvous.py  the two halves of a session meeting inside one machine
    relay.py       the relay: back-pressure, recording, grant watch, idle timeout

No Flask here: ``controller.api.remote`` parses requests and hands over the socket.
"""
