"""A stand-in for the Hugging Face hub on a local FileHost: the resolve protocol and the file listing huggingface_hub
reads.

``hf_hub_download`` sends HEAD ``/{repo}/resolve/{revision}/{file}`` and reads ``X-Repo-Commit`` (the commit the
revision names), ``X-Linked-Etag`` (for an LFS file, its sha256: the blob's name in the cache) and
``X-Linked-Size``; then it GETs the same address (with a Range header when it resumes a cut transfer).
"""
from __future__ import annotations

import hashlib

from http_server import FileHost

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def publish(host: FileHost, repo: str, filename: str, body: bytes, *, revision: str = "main",
            commit: str = COMMIT, oid: str | None = None) -> str:
    """Serve ``body`` as ``filename`` of ``repo`` at ``revision``; ``oid`` (default: its sha256) is the LFS id the
    hub announces. Returns the resolve path."""
    path = f"/{repo}/resolve/{revision}/{filename}"
    host.files[path] = body
    oid = oid or hashlib.sha256(body).hexdigest()
    host.headers[path] = {"X-Repo-Commit": commit, "X-Linked-Etag": f'"{oid}"', "ETag": f'"{oid}"',
                          "X-Linked-Size": str(len(body))}
    return path


def publish_listing(host: FileHost, repo: str, revision: str, files: dict[str, bytes]) -> str:
    """Serve the hub API's file listing of ``repo`` at ``revision`` (what ``list_repo_files`` reads: GET
    ``/api/models/{repo}/tree/{revision}?recursive=...``, one JSON page). Returns the listing's path."""
    import json

    path = f"/api/models/{repo}/tree/{revision}"
    host.files[path] = json.dumps([{"type": "file", "path": name, "size": len(body),
                                    "oid": hashlib.sha1(body).hexdigest()} for name, body in files.items()]).encode()
    host.headers[path] = {"Content-Type": "application/json"}
    return path
