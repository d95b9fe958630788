"""Finding backends without configuration: a local port probe now, mDNS later (F05)."""
