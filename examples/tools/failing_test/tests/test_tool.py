from failing_test.tool import run


def test_counts_single_spaced_words():
    assert run("one two three") == 3


def test_repeated_spaces_do_not_make_words():
    # Fails on purpose: the tool counts the empty strings between the spaces.
    assert run("one  two") == 2
