"""App configuration on the node: instance metadata and user-data for each app, as a NoCloud
seed disk (VMs), a metadata service on every app network (169.254.169.254) and env/files
(containers); and the metrics apps report back through that service."""

from node_agent.metadata.content import instance_metadata, meta_data_json, user_data_bytes

__all__ = ["instance_metadata", "meta_data_json", "user_data_bytes"]
