from hello_world.tool import run


def test_greets_by_name():
    assert run("Ada") == "Hello, Ada."


def test_excited_greeting():
    assert run("Ada", excited=True) == "Hello, Ada!"
