"""Plans a trip, to show how a signature becomes an input schema.

The parameters use a nested pydantic model, a list, an `Optional` with a default, a `Literal`
with a default and a defaulted string, each described in the docstring. The plan is computed
locally (no network), so the same input always gives the same answer.
"""

from typing import Literal, Optional

from pydantic import BaseModel, Field


class Place(BaseModel):
    """A city somewhere in the world."""

    city: str
    country: str = Field(default="NL", description="ISO 3166 country code.")


class Trip(BaseModel):
    """Where from, where to and for how long."""

    origin: Place
    destination: Place
    nights: int = Field(default=1, ge=1)


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
    # Inputs arrive as JSON data; validating accepts that as well as a ready model.
    trip = Trip.model_validate(trip)
    return {
        "route": f"{trip.origin.city} -> {trip.destination.city}",
        "abroad": trip.origin.country != trip.destination.country,
        "nights": trip.nights,
        "travellers": len(travellers),
        "mode": mode,
        "within_budget": budget is None or budget >= 100 * trip.nights,
        "notes": notes,
    }
