"""trainyard.db."""
