"""The router's worker keeps the root logger at its --loglevel.

Faust's worker sets the root logger to DEBUG for its terminal spinner, so every debug
call of aiokafka (several per fetch) built a log record only for the handler to drop
it; ``quiet_worker`` leaves the spinner out."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest
from faust.worker import Worker

from syncbus.router.app import quiet_worker

FETCHER = "aiokafka.consumer.fetcher"


def set_up_logging(worker: Worker) -> None:
    """The worker's logging set-up without its redirect of stdout to the log: that
    redirect is undone when the garbage collector finalizes the worker, which sets
    ``sys.stdout`` back to ``sys.__stdout__`` in the middle of whatever test runs
    then (a later CliRunner test in the same process lost its output to it)."""
    worker.redirect_stdouts = False
    worker._setup_logging()


@pytest.fixture
def saved_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_router_worker_does_not_build_debug_records(tmp_path: Path, saved_logging: None
                                                          ) -> None:
    worker = quiet_worker(faust.App("syncbus-test-logging"), "WARNING", tmp_path)
    set_up_logging(worker)
    assert logging.getLogger().level == logging.WARNING
    assert not logging.getLogger(FETCHER).isEnabledFor(logging.DEBUG)


def test_faust_worker_alone_turns_debug_on(tmp_path: Path, saved_logging: None) -> None:
    """Why ``quiet_worker`` exists: the same worker with Faust's spinner."""
    worker = Worker(faust.App("syncbus-test-logging"), loglevel="WARNING", quiet=True,
                    workdir=tmp_path)
    set_up_logging(worker)
    assert logging.getLogger(FETCHER).isEnabledFor(logging.DEBUG)


def test_setting_up_the_logging_leaves_stdout_alone(tmp_path: Path, saved_logging: None
                                                    ) -> None:
    stdout = sys.stdout
    worker = quiet_worker(faust.App("syncbus-test-logging"), "WARNING", tmp_path)
    set_up_logging(worker)
    del worker
    gc.collect()
    assert sys.stdout is stdout
