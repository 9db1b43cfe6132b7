"""Staged rollouts of an app version through ordered rings of nodes.

models   Rollout, RolloutNode (per-node progress), AppPin (per-node version pins
         that ``controller.domain.desired`` serves instead of the app's definition)
plan     request bodies, ring selection (labels or a percentage)
gates    the health gate of one ring, a pure function of observations and time
engine   the state machine, advanced by ``tick()`` (a thread calls it periodically)
service  operator actions: start, approve, pause, resume, rollback (audited)
"""
