//! The OpenAPI 3.1 document, generated (utoipa) from the handlers and the types of
//! [`crate::dto`]: every body, status, parameter and the bearer scheme, from the code itself.

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; the paths come from [`crate::routes::api_router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hundredx",
        description = "Leveraged trading API. Decimals are strings (exact), ids are strings, \
                       times are milliseconds since the Unix epoch. Errors are \
                       {\"error\": {\"code\", \"message\"}} with a stable code."
    ),
    modifiers(&Bearer),
    components(schemas(crate::dto::ErrorBody, crate::dto::ReasonCode)),
    tags(
        (name = "user", description = "Accounts, sessions, balances"),
        (name = "markets", description = "Public market data"),
        (name = "positions", description = "Trading"),
        (name = "orders", description = "Pending limit and stop orders"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The `bearer` security scheme (JWT in `Authorization: Bearer`).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The whole document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, api) = crate::routes::api_router().split_for_parts();
        serde_json::to_value(&api).unwrap_or_default()
    })
}

/// Every documented operation: (method in upper case, path, needs a token).
pub fn operations() -> Vec<(String, String, bool)> {
    let mut ops = Vec::new();
    for (path, item) in document()["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let auth =
                op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
            ops.push((method.to_uppercase(), path.clone(), auth));
        }
    }
    ops.sort();
    ops
}
