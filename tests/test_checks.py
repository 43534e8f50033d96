"""spidercache.checks: the one range check of arguments (each form, the exact messages)."""

from __future__ import annotations

import doctest

import pytest

from spidercache import checks
from spidercache.checks import at_least, between, positive
from spidercache.errors import UserError


def _message(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as exc:
        fn(*args, **kw)
    return str(exc.value)


def test_at_least_names_the_keyword_and_the_value():
    assert _message(at_least, 1, batch_size=0) == "batch_size must be at least 1, got 0"
    assert _message(at_least, 2, num_classes=1) == "num_classes must be at least 2, got 1"
    assert _message(at_least, 0, size=-3) == "size must be at least 0, got -3"
    assert _message(at_least, 1, pooling=0.5) == "pooling must be at least 1, got 0.5"


def test_flag_shows_the_option_as_typed():
    assert _message(at_least, 1, flag=True, max_message_mb=0) == "--max-message-mb must be at least 1, got 0"
    assert _message(positive, flag=True, lr=-0.1) == "--lr must be a positive number, got -0.1"


def test_between_includes_both_ends():
    between(8, 1024, image_size=8)
    between(8, 1024, image_size=1024, threads=None)
    assert _message(between, 8, 1024, flag=True, image_size=7) == "--image-size must be 8..1024, got 7"
    assert _message(between, 1, 2**23 - 1, tables=2**23) == "tables must be 1..8388607, got 8388608"
    assert _message(between, 0, 1, share=float("nan")) == "share must be 0..1, got nan"


def test_the_first_bad_value_in_order_is_named():
    assert _message(at_least, 1, samples=5, requests=0, steps=0) == "requests must be at least 1, got 0"
    assert _message(positive, tau=1.0, lr=0.0, k=-1) == "lr must be a positive number, got 0.0"


def test_good_values_and_unset_options_pass():
    at_least(1, n=1, repeats=10**12, threads=None)
    at_least(0, workers=0, latency_ms=0.0)
    at_least(8, image_size=None)
    positive(lr=1e-9, tau=3, local_bytes=1, threads=None)


def test_nan_never_passes_and_positive_wants_a_finite_number():
    nan, inf = float("nan"), float("inf")
    assert _message(at_least, 0, latency_ms=nan) == "latency_ms must be at least 0, got nan"
    assert _message(positive, lr=nan) == "lr must be a positive number, got nan"
    assert _message(positive, lr=inf) == "lr must be a positive number, got inf"
    assert _message(positive, local_bytes=0) == "local_bytes must be a positive number, got 0"
    at_least(1, steps=inf)  # a bound only from below


def test_the_docstring_examples_hold():
    result = doctest.testmod(checks)
    assert result.attempted >= 3 and result.failed == 0
