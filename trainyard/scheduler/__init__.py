"""trainyard.scheduler."""
