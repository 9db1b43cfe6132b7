"""Trust: attestation policy (pure), the verifier of quotes and event logs, per-node trust
state in the database, and the operator's trust actions (baseline, revoke, policy,
signing rotation)."""
