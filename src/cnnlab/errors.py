"""User-facing errors.

A ``CnnlabError`` is a user mistake or a bad input (unknown model, corrupt file, NaN loss).
The CLI prints its message as one line and exits with status 2; it never shows a traceback
for one. Messages name the problem and the fix.
"""


class CnnlabError(Exception):
    """A problem the user can fix; its message says how."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; carries the run folder so the message can name it, and how to
    continue where that is not ``cnnlab train --resume RUN``."""

    def __init__(self, run_dir: object, resume_with: str = ""):
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.resume_with = resume_with or f"cnnlab train --resume {run_dir}"
