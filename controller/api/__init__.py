"""The HTTP APIs: the device API (signed envelopes, attestation), the operator API (tokens,
roles, OpenAPI) and the image datastore.  Routes parse the request, call the domain with the
actor and the services, and answer JSON; no business logic lives here."""
