//! The OpenAPI 3.1 document of the API: kept as YAML at
//! `docs/openapi.yaml` (compiled in), served as JSON at
//! `GET /api/openapi.json` (converted once, on the first request).

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

/// The document as written, YAML.
pub const OPENAPI_YAML: &str = include_str!("../../../../docs/openapi.yaml");

/// The document as JSON text.
pub fn openapi_json() -> Result<&'static str, &'static str> {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    JSON.get_or_init(|| {
        let value: serde_json::Value =
            serde_norway::from_str(OPENAPI_YAML).map_err(|e| e.to_string())?;
        serde_json::to_string(&value).map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(String::as_str)
}

pub(crate) async fn route() -> Response {
    match openapi_json() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => {
            super::error::ApiError::internal(format!("the OpenAPI document: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::methods::Method;

    #[test]
    fn the_document_parses_and_has_every_method() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json().unwrap()).unwrap();
        assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for m in Method::ALL {
            let path = format!("/api/{}", m.name());
            assert!(paths[&path]["post"].is_object(), "{path} is not documented");
        }
        assert_eq!(
            paths.len(),
            Method::ALL.len() + 1,
            "the document has paths the API does not serve"
        );
        assert!(paths["/api/openapi.json"]["get"].is_object());
    }
}
