"""benchmarks/timing.py: the measuring behind the benchmarks, including a contender timed in a
child process in the same rounds as the parent's."""

import doctest
import sys
import textwrap
from pathlib import Path

import pytest

# Benchmark tooling is not part of the package: the scripts import it from their own folder.
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import timing  # noqa: E402
from timing import ChildTimers, Remote, interleaved_samples, median_ratio  # noqa: E402

CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, BENCHMARKS)
    from timing import serve_timings

    if "--timing-child" in sys.argv:
        serve_timings({"nap": lambda: time.sleep(0.004)})
""").replace("BENCHMARKS", repr(str(BENCHMARKS)))


def test_a_child_contender_is_timed_there_in_the_parents_rounds(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with ChildTimers.start(str(script), needs="numpy") as child:
        nap = child.contender("nap")
        assert isinstance(nap, Remote)
        samples = interleaved_samples({"here": lambda: None, "there": nap}, rounds=3, number=2, warmup=1)
        assert [len(s) for s in samples.values()] == [3, 3]
        # the child's own clock: its sleeps, not the pipe or the settling pauses around them
        assert all(0.004 <= t < 0.15 for t in samples["there"])
        assert all(t < 0.004 for t in samples["here"])
        with pytest.raises(RuntimeError, match="the timing child stopped"):
            child.contender("not served").run(1)


def test_an_absent_package_means_no_child():
    assert ChildTimers.start(__file__, needs="no_such_package_anywhere") is None


def test_median_ratio_pairs_rounds():
    samples = {"a": [1.0, 10.0, 2.0], "b": [2.0, 10.0, 8.0]}  # ratios 0.5, 1.0, 0.25
    assert median_ratio(samples, "a", "b") == 0.5
    assert median_ratio(samples, "b", "a") == 2.0


def test_the_docstring_examples_run():
    # timing.py left the package, so the package's doctest sweep no longer reaches it
    result = doctest.testmod(timing, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
