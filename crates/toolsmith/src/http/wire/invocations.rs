//! Invocation records: the instance of the listing and search.

use serde::Serialize;
use serde_json::Value;
use toolsmith_domain::InvocationSource;
use toolsmith_domain::{InvocationId, OrgId, ToolId};
use toolsmith_store::{Invocation, InvocationPage};

use super::{ToolUserInfo, VersionOut};

/// `InvocationStatus`: what the tool returned or raised.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InvocationStatus {
    /// The tool returned.
    Succeeded {
        /// Always true.
        succeeded: bool,
        /// The output.
        output: String,
    },
    /// The tool raised.
    Failed {
        /// Always false.
        succeeded: bool,
        /// The exception's message.
        exception_message: String,
        /// The exception's type.
        exception_type: String,
        /// The stack trace lines.
        exception_stack_trace: Vec<String>,
    },
}

/// `ToolInvocationInstance`, plus toolsmith's `caller` extension. Clients built from the contract
/// ignore the extra field; the source is the contract's `InvocationSource` except for toolsmith's
/// own kinds, which the listing and search return only when asked for.
#[derive(Debug, Serialize)]
pub struct ToolInvocationInstance {
    /// The invocation's id.
    pub id: InvocationId,
    /// The organization.
    pub org_id: OrgId,
    /// When it was invoked.
    pub created_at: String,
    /// When the record last changed.
    pub updated_at: String,
    /// What happened.
    pub invocation_status: InvocationStatus,
    /// Where the call came from, as the caller said.
    pub invocation_source: InvocationSource,
    /// How long it ran.
    pub duration_ms: i64,
    /// The tool.
    pub tool_id: ToolId,
    /// The version.
    pub tool_version: VersionOut,
    /// The input parameters.
    pub inputs: Value,
    /// Extension: who really called, whatever source they attached; `null` for records made
    /// before callers were recorded.
    pub caller: Option<ToolUserInfo>,
}

impl From<Invocation> for ToolInvocationInstance {
    fn from(i: Invocation) -> Self {
        let invocation_status = if i.succeeded {
            InvocationStatus::Succeeded { succeeded: true, output: i.output.unwrap_or_default() }
        } else {
            InvocationStatus::Failed {
                succeeded: false,
                exception_message: i.exception_message.unwrap_or_default(),
                exception_type: i.exception_type.unwrap_or_default(),
                exception_stack_trace: i.exception_stack_trace,
            }
        };
        ToolInvocationInstance {
            created_at: i.created_at.to_rfc3339(),
            updated_at: i.updated_at.to_rfc3339(),
            tool_version: i.version.into(),
            caller: i.caller.as_ref().map(Into::into),
            id: i.id,
            org_id: i.org_id,
            invocation_status,
            invocation_source: i.source,
            duration_ms: i.duration_ms,
            tool_id: i.tool_id,
            inputs: i.inputs,
        }
    }
}

/// `GetToolInvocationsResponse`.
#[derive(Debug, Serialize)]
pub struct InvocationsPage {
    /// This page.
    pub tool_invocations: Vec<ToolInvocationInstance>,
    /// Whether more pages follow.
    pub has_more: bool,
    /// The token of the next page, `null` on the last.
    pub continuation_token: Option<i64>,
}

impl InvocationsPage {
    /// The answer for a page.
    pub fn new(page: InvocationPage) -> Self {
        InvocationsPage {
            tool_invocations: page.invocations.into_iter().map(Into::into).collect(),
            has_more: page.has_more,
            continuation_token: page.next,
        }
    }
}

/// `SearchToolInvocationsResponse`.
#[derive(Debug, Serialize)]
pub struct SearchHits {
    /// The matches, newest first.
    pub tool_invocations: Vec<ToolInvocationInstance>,
}

impl SearchHits {
    /// The answer for the matches.
    pub fn new(hits: Vec<Invocation>) -> Self {
        SearchHits { tool_invocations: hits.into_iter().map(Into::into).collect() }
    }
}

/// What an invocation printed (toolsmith's extension).
#[derive(Debug, Serialize)]
pub struct InvocationLogsOut {
    /// The invocation.
    pub invocation_id: InvocationId,
    /// Its captured output, masked.
    pub logs: String,
}
