"""The Spark session builder: UTC, quiet, small shuffles, the JDBC jar, one shared JVM."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from shopflow.settings import load_settings
from shopflow.transform.session import (
    LOCAL_LISTING_THRESHOLD,
    LOCAL_SHUFFLE_PARTITIONS,
    build_spark_session,
)


def test_the_session_is_configured_for_local_runs(spark: SparkSession) -> None:
    conf = spark.sparkContext.getConf()
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == str(LOCAL_SHUFFLE_PARTITIONS)
    assert conf.get("spark.ui.enabled") == "false"
    assert conf.get("spark.master") == "local[2]"
    # The executors write the outputs: the driver keeps Spark's cap on collected results.
    assert conf.get("spark.driver.maxResultSize", None) is None
    assert spark.conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"
    assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed") == "false"
    assert spark.conf.get("spark.sql.sources.parallelPartitionDiscovery.threshold") == str(
        LOCAL_LISTING_THRESHOLD
    )


def test_the_local_jvm_runs_in_utc_with_the_parallel_collector(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    assert jvm.java.lang.System.getProperty("user.timezone") == "UTC"
    collectors = {
        bean.getName()
        for bean in jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    }
    # The parallel collector's beans; G1 (the JVM default) would show "G1 Young Generation".
    assert collectors == {"PS Scavenge", "PS MarkSweep"}


def test_the_postgresql_driver_is_on_the_classpath_when_installed(spark: SparkSession) -> None:
    jar = load_settings().spark_jdbc_jar
    if not jar.is_file():
        assert spark.sparkContext.getConf().get("spark.driver.extraClassPath") is None
        return
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    assert jvm.java.lang.Class.forName("org.postgresql.Driver") is not None


def test_building_again_reuses_the_running_session(spark: SparkSession, tmp_path: Path) -> None:
    again = build_spark_session(load_settings(home=tmp_path), app_name="another")
    assert again is spark
