//! Where an invocation came from: the `invocation_source` of an invocation record.
//!
//! Two kinds are the wire contract's own (`regular-conversation`, `simulation-conversation`);
//! every other kind is toolsmith's and outside the contract's `InvocationSource` union, which
//! clients generated from the contract reject. [`SourceType::in_contract`] tells them apart, so
//! that compatible answers can leave toolsmith's kinds out unless they are asked for.
//!
//! The serde form is the wire form: `type` names the kind and the other fields sit beside it.
//! Deserializing is the one check of a source's shape; a value of these types always serializes
//! to something the contract's models parse. A new kind is a variant here and in [`SourceType`];
//! the matches on them are exhaustive so that the compiler points at every place that must
//! decide about it (who may read it, whether it is in the contract).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of an invocation's source: the `type` of its `invocation_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceType {
    /// `regular-conversation`: an agent in a conversation with a real user.
    RegularConversation,
    /// `simulation-conversation`: an agent in a simulated conversation.
    SimulationConversation,
    /// `direct` (toolsmith's own): a user called the tool through the API.
    Direct,
    /// `mcp` (toolsmith's own): an agent called the tool through the organization's MCP server.
    Mcp,
}

impl SourceType {
    /// Every source type.
    pub const ALL: [SourceType; 4] =
        [SourceType::RegularConversation, SourceType::SimulationConversation, SourceType::Direct, SourceType::Mcp];

    /// The `type` string of the source object.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::RegularConversation => "regular-conversation",
            SourceType::SimulationConversation => "simulation-conversation",
            SourceType::Direct => "direct",
            SourceType::Mcp => "mcp",
        }
    }

    /// Parses a `type` string.
    pub fn parse(s: &str) -> Option<SourceType> {
        SourceType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the wire contract's `InvocationSource` has this kind; records of other kinds are
    /// extensions that clients built from the contract cannot parse.
    pub fn in_contract(self) -> bool {
        match self {
            SourceType::RegularConversation | SourceType::SimulationConversation => true,
            SourceType::Direct | SourceType::Mcp => false,
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invocation's source, in the wire's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InvocationSource {
    /// An agent's turn in a conversation with a real user (the contract's
    /// `RegularConversationInvocationSource`).
    #[serde(rename = "regular-conversation")]
    RegularConversation(ConversationSource),
    /// An agent's turn in a simulated conversation (the contract's
    /// `SimulationConversationInvocationSource`).
    #[serde(rename = "simulation-conversation")]
    SimulationConversation(SimulationSource),
    /// A user's call through the API, without a conversation (toolsmith's own).
    #[serde(rename = "direct")]
    Direct(DirectSource),
    /// An agent's call through the organization's MCP server (toolsmith's own); it has the shape
    /// of a direct call: who called.
    #[serde(rename = "mcp")]
    Mcp(DirectSource),
}

/// `RegularConversationInvocationSource` without its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSource {
    /// The user whose conversation invoked the tool.
    pub user_id: String,
    /// The conversation; the contract makes it nullable, and absent means null.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// The interaction; nullable, absent means null.
    #[serde(default)]
    pub interaction_id: Option<String>,
    /// Where in the agent's state machine the call happened.
    pub invocation_metadata: InvocationMetadata,
}

/// `SimulationConversationInvocationSource` without its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationSource {
    /// The simulation unit test set run; nullable, absent means null.
    #[serde(default)]
    pub simulation_unit_test_set_run_id: Option<String>,
    /// The unit test; nullable, absent means null.
    #[serde(default)]
    pub unit_test_id: Option<String>,
    /// Which run of the unit test; nullable, absent means null.
    #[serde(default)]
    pub run_index: Option<i64>,
    /// Where in the agent's state machine the call happened.
    pub invocation_metadata: InvocationMetadata,
}

/// The `direct` and `mcp` sources: who called. The same user is the record's caller; the source
/// keeps them too because it is what a record of these kinds has always shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectSource {
    /// The calling user.
    pub user_id: String,
    /// The organization that issued the calling user's token.
    pub user_org_id: String,
}

/// The contract's `AgentFrameworkInvocationMetadata`: the point of the agent's state machine at
/// which it called the tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InvocationMetadata {
    /// During a state transition.
    #[serde(rename = "state-transition")]
    StateTransition {
        /// The state machine's id and version.
        current_state_machine_and_version: (String, i64),
        /// The state.
        state_name: String,
        /// Which transition of the navigation, from 1.
        state_transition_index: i64,
        /// Which round of tool calls.
        tool_call_round_index: i64,
    },
    /// While engaging the user.
    #[serde(rename = "engage-user")]
    EngageUser {
        /// The state machine's id and version.
        current_state_machine_and_version: (String, i64),
        /// Which round of tool calls.
        tool_call_round_index: i64,
    },
    /// In a tool-call state.
    #[serde(rename = "tool-call-state")]
    ToolCallState {
        /// The state machine's id and version.
        current_state_machine_and_version: (String, i64),
        /// The state.
        state_name: String,
    },
}

impl InvocationSource {
    /// Its kind.
    pub fn source_type(&self) -> SourceType {
        match self {
            InvocationSource::RegularConversation(_) => SourceType::RegularConversation,
            InvocationSource::SimulationConversation(_) => SourceType::SimulationConversation,
            InvocationSource::Direct(_) => SourceType::Direct,
            InvocationSource::Mcp(_) => SourceType::Mcp,
        }
    }

    /// The conversation, for sources that name one.
    pub fn conversation_id(&self) -> Option<&str> {
        match self {
            InvocationSource::RegularConversation(c) => c.conversation_id.as_deref(),
            InvocationSource::SimulationConversation(_) | InvocationSource::Direct(_) | InvocationSource::Mcp(_) => {
                None
            }
        }
    }

    /// The simulation unit test set run, for sources that name one.
    pub fn simulation_run_id(&self) -> Option<&str> {
        match self {
            InvocationSource::SimulationConversation(s) => s.simulation_unit_test_set_run_id.as_deref(),
            InvocationSource::RegularConversation(_) | InvocationSource::Direct(_) | InvocationSource::Mcp(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn types_round_trip() {
        for t in SourceType::ALL {
            assert_eq!(SourceType::parse(t.as_str()), Some(t));
        }
        assert_eq!(SourceType::parse("mcp"), Some(SourceType::Mcp));
        assert_eq!(SourceType::parse("stdio"), None);
        let contract: Vec<SourceType> = SourceType::ALL.into_iter().filter(|t| t.in_contract()).collect();
        assert_eq!(contract, [SourceType::RegularConversation, SourceType::SimulationConversation]);
    }

    #[test]
    fn sources_keep_the_wire_shape() {
        let regular = json!({
            "type": "regular-conversation",
            "user_id": "u",
            "conversation_id": "c",
            "interaction_id": null,
            "invocation_metadata": {
                "type": "state-transition",
                "current_state_machine_and_version": ["sm", 3],
                "state_name": "lookup",
                "state_transition_index": 1,
                "tool_call_round_index": 0
            }
        });
        let source: InvocationSource = serde_json::from_value(regular.clone()).unwrap();
        assert_eq!(source.source_type(), SourceType::RegularConversation);
        assert_eq!(source.conversation_id(), Some("c"));
        assert_eq!(serde_json::to_value(&source).unwrap(), regular);

        // Nullable fields may be left out; they come back as nulls, as the contract requires.
        let sparse = json!({
            "type": "simulation-conversation",
            "run_index": 2,
            "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}
        });
        let source: InvocationSource = serde_json::from_value(sparse).unwrap();
        assert_eq!(source.simulation_run_id(), None);
        assert_eq!(
            serde_json::to_value(&source).unwrap(),
            json!({
                "type": "simulation-conversation",
                "simulation_unit_test_set_run_id": null,
                "unit_test_id": null,
                "run_index": 2,
                "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}
            })
        );

        let direct = json!({"type": "direct", "user_id": "u", "user_org_id": "acme"});
        let source: InvocationSource = serde_json::from_value(direct.clone()).unwrap();
        assert_eq!((source.source_type(), serde_json::to_value(&source).unwrap()), (SourceType::Direct, direct));

        let mcp = json!({"type": "mcp", "user_id": "u", "user_org_id": "acme"});
        let source: InvocationSource = serde_json::from_value(mcp.clone()).unwrap();
        assert_eq!((source.source_type(), serde_json::to_value(&source).unwrap()), (SourceType::Mcp, mcp));
    }

    #[test]
    fn shapes_outside_the_contract_are_refused() {
        for bad in [
            json!({"type": "mcp"}),
            json!({"user_id": "u"}),
            // The metadata is required, and must be one of the contract's kinds, complete.
            json!({"type": "regular-conversation", "user_id": "u"}),
            json!({"type": "regular-conversation", "user_id": "u", "invocation_metadata": {}}),
            json!({"type": "regular-conversation", "user_id": "u", "invocation_metadata": {"type": "engage-user"}}),
            json!({"type": "regular-conversation", "user_id": "u", "invocation_metadata": {
                "type": "tool-call-state", "current_state_machine_and_version": ["sm"], "state_name": "s"}}),
            json!({"type": "simulation-conversation", "run_index": "2", "invocation_metadata": {
                "type": "tool-call-state", "current_state_machine_and_version": ["sm", 1], "state_name": "s"}}),
            json!({"type": "direct", "user_id": "u"}),
        ] {
            assert!(serde_json::from_value::<InvocationSource>(bad.clone()).is_err(), "{bad}");
        }
    }
}
