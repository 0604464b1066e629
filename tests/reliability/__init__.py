"""Reliability: killed ingests, concurrent writers, hostile inputs, names that try to leave home.

docs/reliability.md says what each test covers and how to reproduce it.
"""
