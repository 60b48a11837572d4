"""trainyard.dashboard."""
