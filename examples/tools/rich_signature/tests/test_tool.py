from rich_signature.tool import Place, Trip, run


def test_plans_a_trip():
    trip = Trip(origin=Place(city="Utrecht"), destination=Place(city="Lyon", country="FR"), nights=2)
    plan = run(trip, ["Ada", "Grace"], budget=150.0)
    assert plan == {"route": "Utrecht -> Lyon", "nights": 2, "travellers": 2, "mode": "train", "within_budget": False}
