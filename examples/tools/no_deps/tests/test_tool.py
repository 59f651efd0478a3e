from no_deps.tool import run


def test_returns_its_input_unchanged():
    assert run("hello, world") == "hello, world"


def test_keeps_whitespace_and_unicode():
    assert run("  ünïcode\n") == "  ünïcode\n"
