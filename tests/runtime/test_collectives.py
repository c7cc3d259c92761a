"""The process group of native collective kernels (runtime/collectives.py)."""

import threading

import numpy as np
import pytest
from native_helpers import make_graph, native, tensor

from ember.runtime.collectives import reducing_over


def summed_graph():
    return make_graph("summed", {"x": tensor("f64", ("B", 3))}, lambda b, v: {"y": b.allreduce_sum(v["x"])})


def test_an_error_of_the_group_is_raised_when_the_block_ends():
    step, x = native(summed_graph()), np.ones((2, 3))

    def broken(buffer: np.ndarray) -> None:
        raise RuntimeError("the network is down")

    with pytest.raises(RuntimeError, match="the network is down"), reducing_over(broken):
        step({"x": x})
    np.testing.assert_array_equal(step({"x": x}).outputs["y"], x)  # nothing left pending


def test_a_group_is_the_threads_that_entered_it():
    step, x = native(summed_graph()), np.ones((2, 3))
    inside, outside = threading.Event(), threading.Event()
    results = {}

    def alone() -> None:
        inside.wait()
        results["alone"] = step({"x": x}).outputs["y"]
        outside.set()

    def doubled(buffer: np.ndarray) -> None:
        buffer *= 2

    thread = threading.Thread(target=alone)
    thread.start()
    with reducing_over(doubled):
        inside.set()
        outside.wait()
        results["grouped"] = step({"x": x}).outputs["y"]
    thread.join()
    np.testing.assert_array_equal(results["alone"], x)
    np.testing.assert_array_equal(results["grouped"], 2 * x)
