from failing_test.tool import run


def test_adds():
    assert run(2, 3) == 5
