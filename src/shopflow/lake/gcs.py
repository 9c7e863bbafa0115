"""google-cloud-storage blobs for lake URLs, for what gcsfs cannot do: generation preconditions.

gcsfs only offers the create-only form of a generation precondition; compare-and-swap records
(`StateStore`), leased locks (`WriterLock`) and conditional partition replacement need the full
form, so they use the google-cloud-storage client (a gcsfs dependency), configured from the gcsfs
file system: same endpoint, project and credentials. Also the gcsfs variant query engines read
through (`range_read_gcs_class`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
from typing import Any

from shopflow.lake.errors import WriteConflictError

_clients: dict[tuple[str, str], Any] = {}


def gcs_blob(fs: Any, path: str) -> Any:
    """The blob at `bucket/key` (a path of the gcsfs file system `fs`)."""
    import google.cloud.storage as storage  # see sources/bus/pubsub.py on the import form
    from google.auth.credentials import AnonymousCredentials

    key = (str(fs.project), str(fs._location))
    client = _clients.get(key)
    if client is None:
        credentials = fs.credentials.credentials or AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = storage.Client(
            project=fs.project,
            credentials=credentials,
            client_options={"api_endpoint": fs._location},
        )
        _clients[key] = client
    bucket, name = path.split("/", 1)
    return client.bucket(bucket).blob(name)


def is_gcs(fs: Any) -> bool:
    """Whether `fs` is Google Cloud Storage (objects have generations)."""
    return "gs" in (fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,))


def _md5(local_file: str) -> str:
    """The file's MD5 as GCS reports it (base64 of the digest)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(local_file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def upload_if_generation(fs: Any, path: str, local_file: str, generation: int) -> None:
    """Upload `local_file` to `path` only if the object is still at `generation` (0: absent)."""
    from google.api_core.exceptions import NotFound, PreconditionFailed

    blob = gcs_blob(fs, path)
    try:
        blob.upload_from_filename(local_file, if_generation_match=generation)
    except PreconditionFailed:
        # The client retries a conditional upload whose answer was lost; the retry then fails the
        # precondition against our own commit. Same bytes there: nothing was lost either way.
        with contextlib.suppress(NotFound):
            blob.reload()
            if blob.md5_hash == _md5(local_file):
                return
        url = fs.unstrip_protocol(path)
        raise WriteConflictError(
            f"{url} was changed by another writer (it is no longer at generation {generation}): "
            "this commit was refused and wrote nothing; is a second writer running without the "
            "lake's writer lock? Run again once it is done"
        ) from None


@functools.cache
def range_read_gcs_class() -> type:
    """gcsfs' file system class, its files fetching only the ranges asked for."""
    from gcsfs.core import GCSFileSystem

    class RangeReadGCSFileSystem(GCSFileSystem):  # type: ignore[misc]
        """gcsfs whose files read exactly the ranges asked for (see `engine_filesystem`)."""

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            kwargs.setdefault("cache_type", "none")
            return super()._open(path, mode, **kwargs)

    return RangeReadGCSFileSystem
