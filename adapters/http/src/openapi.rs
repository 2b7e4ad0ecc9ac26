//! The route table and the OpenAPI 3.1 document built from it.

use serde_json::{Map, Value, json};

/// Every route the router serves: (method, path, summary, needs a token).
pub const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("post", "/api/v1/user/signup", "Create an account: {email, password} -> 201 {user_id}", false),
    ("post", "/api/v1/user/signin", "Sign in: {email, password} -> {token, expires_at}", false),
    (
        "get",
        "/api/v1/user/balance",
        "Balances: {available, locked_margin, equity, unrealized_pnl}",
        true,
    ),
    ("post", "/api/v1/user/deposit", "Demo deposit: {amount}", true),
    ("get", "/api/v1/markets", "Markets with bid, ask, update time and limits", false),
    ("post", "/api/v1/positions", "Open a position -> 201 position", true),
    ("get", "/api/v1/positions", "The caller's positions (?status=open|closed)", true),
    ("get", "/api/v1/positions/{id}", "One position, with uPnL and liquidation price", true),
    ("post", "/api/v1/positions/{id}/close", "Close all or {quantity} -> the closed part", true),
    ("post", "/api/v1/positions/{id}/margin", "Add margin: {amount}", true),
    ("get", "/healthz", "Engine liveness and price age per market", false),
    ("get", "/metrics", "Prometheus metrics", false),
    ("get", "/api/v1/openapi.json", "This document", false),
];

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, auth) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": { "description": "OK" },
                "400": { "$ref": "#/components/responses/Error" },
                "422": { "$ref": "#/components/responses/Error" },
                "429": { "$ref": "#/components/responses/Error" },
                "503": { "$ref": "#/components/responses/Error" },
                "504": { "$ref": "#/components/responses/Error" }
            }
        });
        if *auth {
            op["security"] = json!([{ "bearer": [] }]);
            op["responses"]["401"] = json!({ "$ref": "#/components/responses/Error" });
        }
        if path.contains("{id}") {
            op["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "hundredx", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Leveraged trading API. Decimals are strings; ids are strings." },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "responses": { "Error": { "description": "{\"error\": {\"code\", \"message\"}}",
                "content": { "application/json": { "schema": { "type": "object", "properties": {
                    "error": { "type": "object", "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" } } } } } } } } }
        }
    })
}
