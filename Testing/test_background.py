"""BackgroundJob: the worker thread the Slicer module runs scoring on."""
from __future__ import annotations

import threading

import pytest

from TotalFMLib.background import CANCELLED, FAILED, FINISHED, BackgroundJob
from TotalFMLib.errors import Cancelled, InputError


def test_result_and_progress_reach_the_caller():
    def work(progress, cancel):
        for i in range(5):
            progress(i / 5, f"step {i}")
        return sum(range(10))

    job = BackgroundJob(work).start()
    assert job.wait(10) == FINISHED and job.done
    assert job.result == 45 and job.error is None
    assert job.poll() == [(i / 5, f"step {i}") for i in range(5)]
    assert job.poll() == []
    with pytest.raises(RuntimeError):
        job.start()


def test_cancel_stops_the_work_and_leaves_no_result():
    started, seen = threading.Event(), []

    def work(progress, cancel):
        started.set()
        while True:  # stops only through cancel
            if cancel():
                raise Cancelled("stopped")
            seen.append(1)
            threading.Event().wait(0.001)

    job = BackgroundJob(work).start()
    assert started.wait(10)
    assert not job.done
    job.cancel()
    assert job.wait(10) == CANCELLED
    assert job.result is None and job.error is None and seen


def test_work_that_ignores_cancel_still_ends_cancelled():
    release = threading.Event()

    def work(progress, cancel):
        release.wait(10)
        return "late result"

    job = BackgroundJob(work).start()
    job.cancel()
    release.set()
    assert job.wait(10) == CANCELLED and job.result is None


def test_errors_are_handed_over_not_raised_in_the_thread():
    def work(progress, cancel):
        raise InputError("ct.nii.gz", "not a CT")

    job = BackgroundJob(work).start()
    assert job.wait(10) == FAILED
    assert isinstance(job.error, InputError) and str(job.error) == "ct.nii.gz: not a CT"
