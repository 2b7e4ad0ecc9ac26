//! The OpenAPI 3.1 document, generated (utoipa) from the handlers and the types of
//! [`crate::dto`]: every body, status, parameter and the bearer scheme, from the code itself.
//! Built beside the route list ([`crate::routes`]), which it is made from.

pub use crate::routes::{ApiDoc, document, operations};
