"""The lake: paths, atomic Parquet/JSON writes, partition replacement, listing, reading, state."""

from shopflow.lake.errors import (
    AlreadyExistsError,
    LakeError,
    StateConflictError,
    WriteConflictError,
)
from shopflow.lake.io import (
    PARTITION_TYPES,
    delete_partition,
    object_generation,
    partition_generation,
    partition_values,
    remove_stale_temp_files,
    replace_partition,
    resolve,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from shopflow.lake.layout import (
    PARTITION_FILE,
    LakeLayout,
    batch_file_name,
    parse_ts_token,
    pull_file_name,
    ts_token,
)
from shopflow.lake.lock import LakeBusyError, writer_lock
from shopflow.lake.reading import (
    DataFile,
    Partition,
    list_data_files,
    list_partitions,
    read_dataset,
)
from shopflow.lake.state import StateStore

__all__ = [
    "PARTITION_FILE",
    "PARTITION_TYPES",
    "AlreadyExistsError",
    "DataFile",
    "LakeBusyError",
    "LakeError",
    "LakeLayout",
    "Partition",
    "StateConflictError",
    "StateStore",
    "WriteConflictError",
    "batch_file_name",
    "delete_partition",
    "list_data_files",
    "list_partitions",
    "object_generation",
    "parse_ts_token",
    "partition_generation",
    "partition_values",
    "pull_file_name",
    "read_dataset",
    "remove_stale_temp_files",
    "replace_partition",
    "resolve",
    "ts_token",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_parquet_atomic",
    "writer_lock",
]
