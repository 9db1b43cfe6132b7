"""Every table of the controller, on one declarative ``Base``.

One module per area; importing this package imports them all, so ``Base.metadata``
holds the whole schema (what Alembic's migrations must match).
"""

from controller.store.models.core import (
    ApiToken,
    App,
    Assignment,
    AuditEvent,
    Base,
    Event,
    Image,
    LogBatch,
    MetricSample,
    Network,
    Node,
    PendingRegistration,
    SeenRequest,
    utcnow,
)
from controller.store.models.gitops import GitObject, GitSource, NodeRevision
from controller.store.models.keys import OnboardingBatch, RetiredSigningCert
from controller.store.models.remote import (
    RemoteGrant,
    RemotePolicy,
    RemoteRecordingChunk,
    RemoteSession,
)
from controller.store.models.rollouts import ACTIVE, AppPin, Rollout, RolloutNode, SitePolicy
from controller.store.models.trust import (
    AttestNonce,
    IntegrityToken,
    IssuedConfig,
    NodeTrust,
    TrustPolicy,
)
from controller.store.models.users import UiSession, User, UserInvite

__all__ = [
    "ACTIVE",
    "ApiToken",
    "App",
    "AppPin",
    "Assignment",
    "AttestNonce",
    "AuditEvent",
    "Base",
    "Event",
    "GitObject",
    "GitSource",
    "Image",
    "IntegrityToken",
    "IssuedConfig",
    "LogBatch",
    "MetricSample",
    "Network",
    "Node",
    "NodeRevision",
    "NodeTrust",
    "OnboardingBatch",
    "PendingRegistration",
    "RemoteGrant",
    "RemotePolicy",
    "RemoteRecordingChunk",
    "RemoteSession",
    "RetiredSigningCert",
    "Rollout",
    "RolloutNode",
    "SeenRequest",
    "SitePolicy",
    "TrustPolicy",
    "UiSession",
    "User",
    "UserInvite",
    "utcnow",
]
