"""softserve's HTTP service (built in the service issue)."""
