"""trainyard.worker."""
