"""What the web app's modules share: the error a route answers with, and the runs it keeps loaded."""

from __future__ import annotations

from pathlib import Path


class ApiError(Exception):
    """A request the app refuses: its HTTP status and one line that says what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def within(run: Path, name: str) -> bool:
    """Whether ``name`` in ``run``, once every link is followed, still lies in ``run`` (a shared
    run unpacked into the runs folder could point any of its files anywhere)."""
    return (run / name).resolve().is_relative_to(run.resolve())


def cached_run(path: Path, cache: dict):
    """The Run of a folder, loaded once per app (its model is cached inside it); refused where its
    config or weights are links out of the folder (the app reads nothing outside a run)."""
    from cnnlab.errors import CnnlabError
    from cnnlab.run import Run

    for name in ("config.yaml", "weights"):
        if (path / name).exists() and not within(path, name):
            raise CnnlabError(f"run {path.name}: its {name} leads outside its folder; it is not loaded")
    return cache.get(str(path)) or cache.setdefault(str(path), Run(path))
