import pydantic
import pytest

from rich_signature.tool import Place, Trip, run


def test_plans_a_trip():
    trip = Trip(origin=Place(city="Utrecht"), destination=Place(city="Lyon", country="FR"), nights=2)
    plan = run(trip, ["Ada", "Grace"], budget=150.0)
    assert plan == {
        "route": "Utrecht -> Lyon",
        "abroad": True,
        "nights": 2,
        "travellers": 2,
        "mode": "train",
        "within_budget": False,
        "notes": "",
    }


def test_accepts_the_trip_as_json_data_and_applies_the_defaults():
    plan = run({"origin": {"city": "Delft"}, "destination": {"city": "Gouda"}}, ["Ada"], mode="car", notes="early")
    assert plan == {
        "route": "Delft -> Gouda",
        "abroad": False,
        "nights": 1,
        "travellers": 1,
        "mode": "car",
        "within_budget": True,
        "notes": "early",
    }


def test_rejects_a_trip_without_nights():
    with pytest.raises(pydantic.ValidationError):
        run({"origin": {"city": "A"}, "destination": {"city": "B"}, "nights": 0}, [])
