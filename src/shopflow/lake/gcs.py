"""google-cloud-storage blobs for lake URLs, for what gcsfs cannot do: generation preconditions.

gcsfs only offers the create-only form of a generation precondition; compare-and-swap records
(`StateStore`) and leased locks (`WriterLock`) need the full form, so they use the
google-cloud-storage client (a gcsfs dependency), configured from the gcsfs file system: same
endpoint, project and credentials.
"""

from __future__ import annotations

from typing import Any

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
