"""Connectors read a person's sources and yield frozen records. They never touch the database."""
