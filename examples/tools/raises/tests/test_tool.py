import pytest

from raises.tool import run


def test_raises_value_error_with_the_reason():
    with pytest.raises(ValueError, match=r"^this tool always fails: disk on fire$"):
        run("disk on fire")


def test_has_a_default_reason():
    with pytest.raises(ValueError, match="no reason given"):
        run()
