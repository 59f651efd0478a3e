import pytest

from needs_env.tool import run


@pytest.fixture(autouse=True)
def configured(monkeypatch):
    monkeypatch.setenv("GREETING_PREFIX", "Howdy,")
    monkeypatch.setenv("API_TOKEN", "s3cr3t-t0ken")


def test_uses_the_prefix_and_only_the_length_of_the_token():
    answer = run("Ada")
    assert answer == "Howdy, Ada (API_TOKEN has 12 characters)"
    assert "s3cr3t" not in answer


def test_leaks_the_token_in_the_output_on_request():
    assert run("Ada", leak="output") == "s3cr3t-t0ken"


def test_leaks_the_token_in_an_exception_on_request():
    with pytest.raises(RuntimeError, match="s3cr3t-t0ken"):
        run("Ada", leak="exception")


def test_leaks_the_token_in_the_logs_on_request(capsys):
    run("Ada", leak="log")
    captured = capsys.readouterr()
    assert "s3cr3t-t0ken" in captured.out
    assert "s3cr3t-t0ken" in captured.err


def test_a_missing_variable_is_named(monkeypatch):
    monkeypatch.delenv("GREETING_PREFIX")
    with pytest.raises(RuntimeError, match="GREETING_PREFIX is not set"):
        run("Ada")
