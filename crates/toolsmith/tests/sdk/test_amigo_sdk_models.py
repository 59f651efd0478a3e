"""Invocation pages of a running toolsmith, parsed with the models of Amigo's Python SDK.

A client generated from Amigo's contract parses a listing or search answer a whole page at a time,
so one record it cannot parse loses it the page. These tests make invocations of every kind
through the API (direct calls, and calls attached to a conversation or a simulation), then read
every page the way such a client would.

The API suite starts the server and runs this module (`tests/api/invocations.rs`); it passes what
the tests need in the environment:

    TOOLSMITH_URL            the server's base URL
    TOOLSMITH_ORG            the organization
    TOOLSMITH_ADMIN_TOKEN    a token of an admin of it; TOOLSMITH_ADMIN_ID, that user's id
    TOOLSMITH_AGENT_TOKEN    a token of a user with the agent-runtime role; TOOLSMITH_AGENT_ID
    TOOLSMITH_ECHO_TOOL      a tool whose version 1.0.0 is the context_echo sample
    TOOLSMITH_RAISES_TOOL    a tool whose version 1.0.0 is the raises sample
"""

import importlib.metadata
import json
import os
import unittest
import urllib.parse
import urllib.request

import pydantic
from amigo_sdk.generated.model import (
    ToolGetToolInvocationsResponse,
    ToolInvocationInstance,
    ToolSearchToolInvocationsResponse,
)

SDK_VERSION = "2.5.0"
CONVERSATION = "c0ffee00c0ffee00c0ffee00"
RUN = "5e55105e55105e55105e5510"
SOMEONE = "0123456789abcdef01234567"
EVERY_SOURCE_TYPE = ["regular-conversation", "simulation-conversation", "direct"]


def env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set; the API suite runs this module against a server it starts")
    return value


class Api:
    """The few calls the tests make, with the standard library."""

    def __init__(self):
        self.base = f"{env('TOOLSMITH_URL')}/v1/{env('TOOLSMITH_ORG')}"

    def call(self, token, method, path, query=None, body=None):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def invoke(self, token, tool, inputs):
        body = {"inputs": inputs}
        return self.call(token, "POST", f"/tool/{tool}/version/1.0.0/invoke", body=body)

    def listing(self, token, query):
        return self.call(token, "GET", "/tool/invocation", query=query)

    def search(self, token, query):
        return self.call(token, "GET", "/tool/invocation/search", query=query)


def an_input(parameters, source=None):
    data = {
        "input_parameters": parameters,
        "invocation_mode": "regular",
        "nonsensitive_user_variables": {},
        "sensitive_user_variables": {},
    }
    if source is not None:
        data["invocation_source"] = source
    return data


def conversation(metadata):
    return {
        "type": "regular-conversation",
        "user_id": SOMEONE,
        "conversation_id": CONVERSATION,
        "interaction_id": None,
        "invocation_metadata": metadata,
    }


# The contract's three kinds of metadata; the nullable fields of the simulation are left out,
# which the server records as nulls.
STATE_TRANSITION = {
    "type": "state-transition",
    "current_state_machine_and_version": ["support", 3],
    "state_name": "lookup",
    "state_transition_index": 1,
    "tool_call_round_index": 0,
}
ENGAGE_USER = {"type": "engage-user", "current_state_machine_and_version": ["support", 3], "tool_call_round_index": 2}
TOOL_CALL_STATE = {"type": "tool-call-state", "current_state_machine_and_version": ["support", 4], "state_name": "pay"}
SIMULATION = {"type": "simulation-conversation", "simulation_unit_test_set_run_id": RUN, "run_index": 1}


class AmigoSdkModelsParseEveryPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.api = Api()
        cls.admin, cls.admin_id = env("TOOLSMITH_ADMIN_TOKEN"), env("TOOLSMITH_ADMIN_ID")
        cls.agent, cls.agent_id = env("TOOLSMITH_AGENT_TOKEN"), env("TOOLSMITH_AGENT_ID")
        echo, raises = env("TOOLSMITH_ECHO_TOOL"), env("TOOLSMITH_RAISES_TOOL")
        invoke = cls.api.invoke
        # Direct calls first and last, so that every page of the default listing is next to one.
        invoke(cls.admin, echo, [an_input({"note": "pelican direct first"}), an_input({"note": "pelican direct"})])
        invoke(cls.agent, echo, [an_input({"note": "pelican regular"}, conversation(STATE_TRANSITION))])
        invoke(cls.agent, raises, [an_input({"reason": "pelican failed"}, conversation(ENGAGE_USER))])
        invoke(cls.admin, raises, [an_input({"reason": "pelican direct failure"})])
        invoke(
            cls.agent,
            echo,
            [
                an_input({"note": "pelican simulated"}, {**SIMULATION, "invocation_metadata": TOOL_CALL_STATE}),
                an_input({"note": "pelican simulated again"}, {**SIMULATION, "invocation_metadata": ENGAGE_USER}),
            ],
        )
        invoke(cls.admin, echo, [an_input({"note": "pelican direct last"})])
        cls.attached = 4
        cls.direct = 4

    def all_pages(self, query, limit):
        """Every page of a listing, each parsed with the SDK's model, and the raw rows."""
        pages, rows, token = [], [], 0
        while True:
            raw = self.api.listing(self.admin, {**query, "limit": limit, "continuation_token": token})
            pages.append(ToolGetToolInvocationsResponse.model_validate(raw))
            rows.extend(raw["tool_invocations"])
            if not raw["has_more"]:
                return pages, rows
            token = raw["continuation_token"]

    def test_the_pinned_sdk_is_the_one_installed(self):
        self.assertEqual(importlib.metadata.version("amigo-sdk"), SDK_VERSION)

    def test_default_listing_parses_page_by_page_and_holds_the_contract_kinds(self):
        for limit in (1, 2, 3, 100):
            with self.subTest(limit=limit):
                pages, rows = self.all_pages({}, limit)
                parsed = [i for page in pages for i in page.tool_invocations]
                self.assertEqual(len(parsed), self.attached)
                self.assertEqual([i.id for i in parsed], [row["id"] for row in rows])
                kinds = sorted(i.invocation_source.root.type for i in parsed)
                self.assertEqual(kinds, ["regular-conversation"] * 2 + ["simulation-conversation"] * 2)
                self.assertEqual(len(pages), max(1, -(-self.attached // limit)))

    def test_filtered_and_sorted_listings_parse(self):
        for query, count in [
            ({"invocation_source_type": "regular-conversation"}, 2),
            ({"invocation_source_type": "simulation-conversation"}, 2),
            ({"invocation_source_type": ["regular-conversation", "simulation-conversation"]}, 4),
            ({"conversation_id": CONVERSATION}, 2),
            ({"simulation_unit_test_set_run_id": RUN}, 2),
            ({"succeeded": "false"}, 1),
            ({"tool_id": env("TOOLSMITH_RAISES_TOOL")}, 1),
            ({"tool_id": env("TOOLSMITH_ECHO_TOOL"), "version": ">=1"}, 3),
            ({"sort_by": ["-invocation_source.type", "+created_at"]}, 4),
            ({"sort_by": "-invocation_status.succeeded"}, 4),
        ]:
            with self.subTest(query=query):
                pages, _ = self.all_pages(query, 1)
                parsed = [i for page in pages for i in page.tool_invocations]
                self.assertEqual(len(parsed), count)

    def test_search_pages_parse(self):
        for query, count in [
            ({"query": "pelican"}, 4),
            ({"query": "pelican", "query_against": "invocation_status.output"}, 3),
            ({"query": "pelican", "query_against": "invocation_status.exception_message"}, 1),
            ({"query": "ValueError", "query_against": "invocation_status.exception_type"}, 1),
            ({"query": "pelican", "invocation_source_type": "simulation-conversation"}, 2),
            ({"query": "pelican", "conversation_id": CONVERSATION, "succeeded": "true"}, 1),
            ({"query": "pelican", "limit": 2}, 2),
            ({"query": "direct"}, 0),
        ]:
            with self.subTest(query=query):
                raw = self.api.search(self.admin, query)
                page = ToolSearchToolInvocationsResponse.model_validate(raw)
                self.assertEqual(len(page.tool_invocations), count)
                for record in page.tool_invocations:
                    self.assertNotEqual(record.invocation_source.root.type, "direct")

    def test_failed_invocations_parse_as_failed_statuses(self):
        _, rows = self.all_pages({"succeeded": "false"}, 10)
        record = ToolInvocationInstance.model_validate(rows[0])
        status = record.invocation_status.root
        self.assertFalse(status.succeeded)
        self.assertEqual(status.exception_type, "ValueError")
        self.assertIn("pelican failed", status.exception_message)
        self.assertTrue(status.exception_stack_trace)

    def test_the_caller_extension_is_there_and_ignored_by_the_models(self):
        pages, rows = self.all_pages({}, 100)
        for row, record in zip(rows, pages[0].tool_invocations):
            # The real caller is the agent runtime, not the conversation's user it attached.
            self.assertEqual(row["caller"], {"org_id": env("TOOLSMITH_ORG"), "user_id": self.agent_id})
            self.assertNotIn("caller", record.model_dump())
            self.assertEqual(record.id, row["id"])
        regular = [r for r in pages[0].tool_invocations if r.invocation_source.root.type == "regular-conversation"]
        self.assertEqual({r.invocation_source.root.user_id for r in regular}, {SOMEONE})
        simulated = [r for r in pages[0].tool_invocations if r.invocation_source.root.type == "simulation-conversation"]
        self.assertEqual({r.invocation_source.root.unit_test_id for r in simulated}, {None})
        self.assertEqual(
            sorted(r.invocation_source.root.invocation_metadata.root.type for r in simulated),
            ["engage-user", "tool-call-state"],
        )

    def test_direct_invocations_are_listed_and_searched_only_when_asked_for(self):
        # Naming every kind is how to get everything.
        for types, total in (("direct", self.direct), (EVERY_SOURCE_TYPE, self.direct + self.attached)):
            with self.subTest(types=types):
                raw = self.api.listing(self.admin, {"invocation_source_type": types, "limit": 100})
                self.assertEqual(len(raw["tool_invocations"]), total)
                direct = [r for r in raw["tool_invocations"] if r["invocation_source"]["type"] == "direct"]
                self.assertEqual(len(direct), self.direct)
                for row in direct:
                    caller = {"org_id": env("TOOLSMITH_ORG"), "user_id": self.admin_id}
                    self.assertEqual(row["caller"], caller)
                    self.assertEqual(
                        row["invocation_source"],
                        {"type": "direct", "user_id": self.admin_id, "user_org_id": env("TOOLSMITH_ORG")},
                    )
                # This is why direct records are an opt-in: the contract's models cannot hold them.
                with self.assertRaises(pydantic.ValidationError):
                    ToolGetToolInvocationsResponse.model_validate(raw)
        raw = self.api.search(self.admin, {"query": "direct", "invocation_source_type": "direct"})
        self.assertEqual(len(raw["tool_invocations"]), self.direct)


if __name__ == "__main__":
    unittest.main()
