import pytest

from runner.schemas.units import parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5), ("1m30s", 90.0),
    ("1.5s", 1.5), (10, 10.0), (0.25, 0.25), ("250us", 0.00025),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 parsecs", "s", "", "10", "1x", True, None, "-5s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text, size", [
    ("1KiB", 1024), ("2MB", 2_000_000), ("1.5MiB", 1_572_864), (512, 512), ("512B", 512), ("1kb", 1000),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["1 lightyear", "KiB", True, 1.5, "-1KiB"])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)
