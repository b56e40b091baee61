"""Signal handlers that feed the audit log (sign-in, admin changes)."""
