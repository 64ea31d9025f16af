"""What a model may do to the process that scores it in-process: time limits and exits.

The engine calls a model inside :func:`model_call`:

- **Time limit per batch.** ``seconds`` (the protocol's ``batch_timeout_s``, else
  :data:`DEFAULT_BATCH_TIMEOUT_S`; ``cals-bench run --batch-timeout`` overrides; 0 = none) arms
  ``SIGALRM``; when it fires, :class:`ModelTimeout` is raised in the model's Python code and the batch fails
  with "did not return within N s". A model stuck *outside* Python (a C call that never returns) cannot be
  interrupted that way: a watchdog thread waits a further grace period (:data:`HARD_GRACE_S`, 60 s;
  ``$CALS_BENCH_HARD_GRACE_S``), then records the batch as failed, marks the run ``stopped`` and ends the process with exit
  status 2 (:func:`hard_stop`). The alarm needs the main thread of a POSIX process; elsewhere only the
  watchdog applies.
- **Exits.** ``sys.exit(n)`` inside the model raises ``SystemExit``, which the engine would not catch; it
  becomes :class:`ModelExit` ("called sys.exit(n)"). ``os._exit(n)`` would end the process at once, with
  status ``n`` and nothing recorded: while :func:`exit_guard` is active (the whole of ``evaluate``, model
  import and construction included) ``os._exit`` and ``posix._exit`` are replaced by a function that raises
  :class:`ModelExit` inside model code and exits normally elsewhere. What the in-process path cannot catch:
  a model that kills its own process (``os.kill(os.getpid(), SIGKILL)``, ``ctypes`` calls to ``exit``),
  or that saved the real ``os._exit`` before the guard was installed. Such a run stays ``running`` and
  resumes when the command is run again; the isolated submission process (another process per model)
  is the way to contain those.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEFAULT_BATCH_TIMEOUT_S = 1800.0
# the watchdog's wait after the limit, before it ends a process stuck outside Python (env override for tests)
HARD_GRACE_S = float(os.environ.get("CALS_BENCH_HARD_GRACE_S") or 60.0)

_REAL_EXIT = os._exit
_state = threading.local()
_guard_depth = 0
_guard_lock = threading.Lock()


class ModelTimeout(BaseException):  # raised into model code: BaseException so that a model's
    """The model did not return within the batch time limit (a BaseException, like KeyboardInterrupt, so a
    model's own ``except Exception`` cannot swallow it)."""


class ModelExit(Exception):
    """The model called ``sys.exit`` or ``os._exit``."""


def _guarded_exit(code: int = 0) -> None:
    if getattr(_state, "in_model", False):
        raise ModelExit(f"called os._exit({code})")
    _REAL_EXIT(code)


@contextmanager
def exit_guard() -> Iterator[None]:
    """Replace ``os._exit`` (and ``posix._exit``) by the guarded version while the block runs."""
    global _guard_depth
    posix = sys.modules.get("posix") or sys.modules.get("nt")
    with _guard_lock:
        _guard_depth += 1
        if _guard_depth == 1:
            os._exit = _guarded_exit
            if posix is not None:
                posix._exit = _guarded_exit
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0:
                os._exit = _REAL_EXIT
                if posix is not None:
                    posix._exit = _REAL_EXIT


@contextmanager
def model_code() -> Iterator[None]:
    """Mark the block as model code: ``sys.exit``/``os._exit`` there become :class:`ModelExit`."""
    previous = getattr(_state, "in_model", False)
    _state.in_model = True
    try:
        yield
    except SystemExit as exc:
        code = "" if exc.code is None else repr(exc.code)
        raise ModelExit(f"called sys.exit({code})") from None
    finally:
        _state.in_model = previous


@contextmanager
def model_call(seconds: float | None, on_hard_timeout: Callable[[str], None] | None = None) -> Iterator[None]:
    """Run the block as model code under a time limit of ``seconds`` (None or 0: no limit)."""
    if not seconds:
        with model_code():
            yield
        return
    message = f"did not return within {seconds:g} s"
    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    old_handler = None
    if use_alarm:

        def on_alarm(signum, frame):
            raise ModelTimeout(message)

        old_handler = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
    watchdog = None
    if on_hard_timeout is not None:
        grace = HARD_GRACE_S
        watchdog = threading.Timer(
            float(seconds) + grace,
            on_hard_timeout,
            args=(
                f"{message} and could not be interrupted (stuck outside Python for a further {grace:g} s)",
            ),
        )
        watchdog.daemon = True
        watchdog.start()
    try:
        with model_code():
            yield
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)


def hard_stop(message: str, status: int = 2) -> None:
    """End the process now (from the watchdog thread) after one line on stderr."""
    try:
        print(f"error: {message}", file=sys.stderr, flush=True)
    finally:
        _REAL_EXIT(status)
