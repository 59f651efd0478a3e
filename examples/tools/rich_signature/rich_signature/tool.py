from typing import Literal, Optional

from pydantic import BaseModel, Field


class Place(BaseModel):
    city: str
    country: str = Field(default="NL", description="ISO 3166 country code.")


class Trip(BaseModel):
    origin: Place
    destination: Place
    nights: int = 1


def run(
    trip: Trip,
    travellers: list[str],
    budget: Optional[float] = None,
    mode: Literal["train", "plane", "car"] = "train",
    notes: str = "",
) -> dict:
    """Plan a trip.

    Args:
        trip: Where from, where to and for how long.
        travellers: Names of everyone travelling.
        budget: Most the trip may cost, in euros; no limit when absent.
        mode: How to travel.
        notes: Anything else to keep in mind.
    """
    return {
        "route": f"{trip.origin.city} -> {trip.destination.city}",
        "nights": trip.nights,
        "travellers": len(travellers),
        "mode": mode,
        "within_budget": budget is None or budget >= 100 * trip.nights,
    }
