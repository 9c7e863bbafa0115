"""The one Spark session the whole test run shares (Spark takes seconds to start)."""
