//! Extractors whose rejections use the error envelope instead of axum's plain-text defaults.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::{ApiError, Loc};
use super::params::json_object;

/// A JSON object body, limited in size.
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.")
            } else {
                ApiError::invalid(vec![Loc::from("body")], "body_read", rejection.body_text(), None)
            }
        })?;
        json_object(&bytes).map(JsonBody)
    }
}

/// The path parameters of the matched route, by name.
pub struct PathParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await.map_err(|rejection| {
                ApiError::invalid(vec![Loc::from("path")], "path_parsing", rejection.body_text(), None)
            })?;
        Ok(PathParams(params))
    }
}

impl PathParams {
    /// A 24-hex id parameter of the kind `T` (`ToolId`, `UserId`, …); anything else is a 422
    /// naming the parameter.
    pub fn id<T: std::str::FromStr>(&self, name: &str) -> Result<T, ApiError> {
        let raw = self.0.get(name).map(String::as_str).unwrap_or_default();
        raw.parse::<T>().map_err(|_| {
            ApiError::invalid(
                vec![Loc::from("path"), Loc::from(name)],
                "string_pattern_mismatch",
                "String should match pattern '^[a-f0-9]{24}$'",
                Some(Value::String(raw.to_owned())),
            )
        })
    }
}
