import dataclasses
import json
from types import SimpleNamespace

from context_echo.tool import run


def test_echoes_a_mapping_context():
    context = {
        "invocation_mode": "conversation-simulation",
        "nonsensitive_user_variables": {"locale": "pt_PT"},
        "sensitive_user_variables": {"member_id": "m-42"},
    }
    answer = run("first", context=context)
    assert answer == {"note": "first", "context_type": "dict", "context": context}
    assert json.loads(json.dumps(answer)) == answer


def test_echoes_an_object_context_through_its_attributes():
    context = SimpleNamespace(invocation_mode="regular", nonsensitive_user_variables={}, _private=1)
    answer = run(context=context)
    assert answer["context"] == {"invocation_mode": "regular", "nonsensitive_user_variables": {}}
    assert answer["context_type"] == "SimpleNamespace"


def test_echoes_a_dataclass_context():
    @dataclasses.dataclass
    class Context:
        invocation_mode: str
        sensitive_user_variables: dict

    answer = run(context=Context("regular", {"ssn": "x"}))
    assert answer["context"] == {"invocation_mode": "regular", "sensitive_user_variables": {"ssn": "x"}}


def test_without_a_context():
    assert run("alone") == {"note": "alone", "context_type": "NoneType", "context": None}
