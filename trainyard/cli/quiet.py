"""TensorFlow imported quietly, for the commands that need it (validate, train, submit, run)."""

from __future__ import annotations

import os
import sys
import tempfile


def quiet_tensorflow() -> None:
    """Import TensorFlow (and let it find its devices) without its start-up chatter on the terminal.

    TensorFlow 2.21 prints info lines from C++ before its logging is set up, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. Commands that will import it anyway call this first: stderr goes to
    a temporary file meanwhile, and is replayed only if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
