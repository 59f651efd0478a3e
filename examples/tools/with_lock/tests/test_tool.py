from with_lock.tool import run


def test_decimal_units_by_default():
    assert run(3_000_000) == "3.0 MB"


def test_binary_units_on_request():
    assert run(3 * 1024 * 1024, binary=True) == "3.0 MiB"


def test_small_counts_stay_in_bytes():
    assert run(1) == "1 Byte"
