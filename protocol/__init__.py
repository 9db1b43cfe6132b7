"""The wire schema shared by controller and node agent.

Imports neither side.  Every message is a pydantic model that refuses unknown
fields and bounds every size, so both ends validate the same way and errors
name the offending field.
"""

from protocol.desired_state import (
    AppSpec,
    DesiredState,
    ImageRef,
    NodeSettings,
    Resources,
)
from protocol.messages import (
    AppState,
    AppStatus,
    ConfigRequest,
    ConfigResponse,
    InfoMessage,
    RegisterRequest,
    RegisterResponse,
)

__all__ = [
    "AppSpec",
    "AppState",
    "AppStatus",
    "ConfigRequest",
    "ConfigResponse",
    "DesiredState",
    "ImageRef",
    "InfoMessage",
    "NodeSettings",
    "RegisterRequest",
    "RegisterResponse",
    "Resources",
]
