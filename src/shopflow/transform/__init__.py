"""The ETL: pure PySpark-API transforms (one module per entity) and the one Spark session builder."""
