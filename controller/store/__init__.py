"""Storage: SQLAlchemy models and the database, Alembic migrations, the image blobs on disk,
the PKI files, the replay table, the long-poll notifier, the audit log and lookups."""
