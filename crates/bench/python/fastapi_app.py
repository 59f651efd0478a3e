"""The baseline server: the trivial tool behind FastAPI in the same process, with no isolation.

It accepts and answers the same JSON shapes as toolsmith's invoke endpoint, so that client and
payload are identical and only the server differs.
"""

import time
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from trivial_tool.tool import run


class ToolInput(BaseModel):
    input_parameters: dict[str, Any]
    invocation_mode: str
    nonsensitive_user_variables: dict[str, Any] = {}
    sensitive_user_variables: dict[str, Any] = {}


class InvokeRequest(BaseModel):
    inputs: list[ToolInput]


app = FastAPI()


# `async def` keeps the call on the event loop; a plain `def` would add a thread-pool hop per request.
@app.post("/invoke")
async def invoke(request: InvokeRequest) -> dict[str, Any]:
    results = []
    for item in request.inputs:
        started = time.perf_counter()
        output = run(**item.input_parameters)
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        results.append({"succeeded": True, "output": output, "duration_ms": elapsed_ms})
    return {"invocation_results": results}
