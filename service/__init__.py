"""softserve's HTTP service: serves the trainer's artifacts and trains new versions."""
