"""trainyard.specs."""
