"""Session fixtures that make sure the real local services (Pub/Sub emulator, Kafka broker) run."""
