"""Fetch official dataset files into the cache, checksum-verified, or say what to place where."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cnnlab.errors import CnnlabError


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, folder: Path, filename: str, md5: str, dataset: str) -> Path:
    """Return ``folder/filename``, downloading it first if absent; verify its MD5 either way.

    Downloads use torchvision's downloader (progress bar, checksum). Offline, one line names
    the file and the folder to put it in.
    """
    path = folder / filename
    if path.is_file():
        if md5sum(path) != md5:
            raise CnnlabError(
                f"{path} is corrupt (MD5 differs from the official {md5}); delete it and rerun "
                f"to download it again, or replace it with the file from {url}"
            )
        return path
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from torchvision.datasets.utils import download_url

        download_url(url, str(folder), filename, md5)
    except Exception as e:  # noqa: BLE001 - any network failure means the same to the user
        partial = folder / filename
        if partial.exists() and md5sum(partial) != md5:
            partial.unlink()
        raise CnnlabError(
            f"{dataset}: could not download {url} ({e.__class__.__name__}); offline, place "
            f"that file at {path} (or pass --data-dir FOLDER holding {filename})"
        ) from None
    if not path.is_file() or md5sum(path) != md5:
        raise CnnlabError(f"{dataset}: download of {url} failed its checksum; rerun to retry")
    return path
