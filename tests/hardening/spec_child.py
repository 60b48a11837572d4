"""A child process that reads specs as a user's process would, each under its own CPU budget.

Run by ``tests/hardening/test_limits.py`` with a memory limit (``RLIMIT_AS``) set on the whole
process. It reads one JSON request per line on stdin, ``{"yaml": text, "cpu_seconds": n}``, sets
its CPU limit to what it has used so far plus ``n`` (the kernel kills it with SIGXCPU past that), runs
``load_spec`` on the text and answers one JSON line on stdout: ``{"outcome": "ok"}``, ``{"outcome":
"spec_error", "problems": [[path, message], ...]}`` or ``{"outcome": "exception", "traceback": ...}``.
A request that costs more memory than the limit ends in ``MemoryError`` (an exception) or kills
the child; either way the test sees it.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback


def main() -> None:
    from trainyard.errors import SpecError
    from trainyard.specs import load_spec

    for line in sys.stdin:
        request = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (spent + int(request["cpu_seconds"]), hard))
        try:
            load_spec(request["yaml"])
            answer: dict[str, object] = {"outcome": "ok"}
        except SpecError as exc:
            answer = {"outcome": "spec_error", "problems": [[p.path, p.message] for p in exc.problems]}
        except BaseException:  # noqa: BLE001 - anything else is what the test is looking for
            answer = {"outcome": "exception", "traceback": traceback.format_exc()[-4000:]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
