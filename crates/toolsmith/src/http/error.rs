//! The error envelope: `{"detail": "<message>"}` for every error, and FastAPI's list form
//! `{"detail": [{"loc", "msg", "type", "input"?}]}` for 422, because that is what clients written
//! for the compatible API parse.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use toolsmith_store::StoreError;

/// The 401 text every endpoint uses.
pub const UNAUTHORIZED: &str = "Invalid authorization credentials.";
/// The 403 text every endpoint uses.
pub const FORBIDDEN: &str = "Missing required permissions.";
/// The 503 text every endpoint uses.
pub const UNAVAILABLE: &str = "The service is going through temporary maintenance.";

/// One element of a validation error's location: a name or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Loc {
    /// A field, parameter or section name (`"body"`, `"query"`, `"name"`).
    Key(String),
    /// A position in a list.
    Index(usize),
}

impl From<&str> for Loc {
    fn from(s: &str) -> Self {
        Loc::Key(s.to_owned())
    }
}

impl From<usize> for Loc {
    fn from(i: usize) -> Self {
        Loc::Index(i)
    }
}

/// One validation failure, shaped like pydantic's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Where the bad value is.
    pub loc: Vec<Loc>,
    /// What is wrong with it.
    pub msg: String,
    /// A machine-readable error kind (`missing`, `string_type`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending value, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

impl FieldError {
    /// A failure at `loc` of kind `kind`.
    pub fn new(loc: Vec<Loc>, kind: &str, msg: impl Into<String>, input: Option<Value>) -> Self {
        FieldError { loc, msg: msg.into(), kind: kind.to_owned(), input }
    }
}

#[derive(Debug, Clone)]
enum Detail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// An error response. Boxed so that `Result<_, ApiError>` stays small on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    status: StatusCode,
    detail: Detail,
    headers: HeaderMap,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(Box::new(Inner { status, detail: Detail::Message(message.into()), headers: HeaderMap::new() }))
    }

    /// 400 with an endpoint's message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED)
    }

    /// 403.
    pub fn forbidden() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, FORBIDDEN)
    }

    /// 404 with an endpoint's message.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 with an endpoint's message.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 422 listing every problem found.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        ApiError(Box::new(Inner {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: Detail::Fields(errors),
            headers: HeaderMap::new(),
        }))
    }

    /// 422 for a single problem.
    pub fn invalid(loc: Vec<Loc>, kind: &str, msg: impl Into<String>, input: Option<Value>) -> Self {
        ApiError::validation(vec![FieldError::new(loc, kind, msg, input)])
    }

    /// 500: a bug or an unexpected failure; the details go to the log, not to the client.
    pub fn internal() -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.")
    }

    /// 503 with the contract's maintenance text.
    pub fn unavailable() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            tracing::error!(error = %err, "database unavailable");
            ApiError::unavailable()
        } else {
            tracing::error!(error = %err, "store error");
            ApiError::internal()
        }
    }
}

#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    detail: &'a T,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Inner { status, detail, headers } = *self.0;
        let mut response = match &detail {
            Detail::Message(m) => (status, axum::Json(Body { detail: m })).into_response(),
            Detail::Fields(f) => (status, axum::Json(Body { detail: f })).into_response(),
        };
        response.headers_mut().extend(headers);
        response
    }
}

impl ApiError {
    /// The answer of an operation to a use case's error: a missing resource gets the operation's
    /// own 404 text, the rest their status and message.
    pub fn from_service(op: &'static super::operations::Operation) -> impl Fn(crate::service::Error) -> ApiError {
        use crate::service::Error;
        move |err| match err {
            Error::NotFound => ApiError::not_found(op.org_not_found),
            Error::Unauthenticated(message) => ApiError::new(StatusCode::UNAUTHORIZED, message),
            Error::Forbidden => ApiError::forbidden(),
            Error::Rejected(message) | Error::InvalidInput(message) => ApiError::bad_request(message),
            // The handlers check arguments where they arrive, with their location and input;
            // these are what a check deeper down found beyond that.
            Error::InvalidArgument { name, message } => ApiError::invalid(
                vec![Loc::from("query"), Loc::from(name)],
                "value_error",
                format!("Value error, {message}"),
                None,
            ),
            Error::Conflict(message) => ApiError::conflict(message),
            Error::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many tool invocations are running on this server; retry shortly.",
            )
            .with_header(HeaderName::from_static("retry-after"), HeaderValue::from_static("1")),
            Error::Unavailable(message) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message),
            Error::Store(store) => ApiError::from(store),
            Error::Internal(_) => ApiError::internal(),
        }
    }
}
