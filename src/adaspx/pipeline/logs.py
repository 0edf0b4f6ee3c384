"""One rule's log file: logging and stderr of the stage, failures as one line."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from pathlib import Path

from adaspx import datasets
from adaspx.h5io import ArtifactError
from adaspx.pipeline.people import PeopleError

log = logging.getLogger("adaspx")


@contextlib.contextmanager
def log_to(path: str | Path | None):
    """Send logging and stderr (progress bars, warnings) of one rule to its log file.

    A failure is logged with its traceback. Errors in the user's inputs (a dataset file, an artifact, a full disk:
    their message names the file) then end the job with that one line on the console instead of a traceback."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old_stderr = sys.stderr
        sys.stderr = fh
        try:
            yield
        except (datasets.DatasetError, ArtifactError, PeopleError) as err:
            log.exception("stage failed")
            raise SystemExit(f"{type(err).__name__}: {err}") from None
        except OSError as err:
            log.exception("stage failed")
            if err.errno == errno.ENOSPC:
                raise SystemExit(str(err)) from None
            raise
        except Exception:
            log.exception("stage failed")
            raise
        finally:
            sys.stderr = old_stderr
            root.removeHandler(handler)
