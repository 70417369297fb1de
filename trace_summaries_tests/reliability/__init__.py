"""Reliability tests: bad input, tenant isolation, secrets, PII redaction (and faults)."""
