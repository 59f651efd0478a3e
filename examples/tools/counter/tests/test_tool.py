from counter import tool


def test_counts_calls_within_one_process():
    first = tool.run()
    assert tool.run() == first + 1
    assert tool.run() == first + 2
