"""Persistence: the database connection (db), its schema and migrations, and the repository."""
