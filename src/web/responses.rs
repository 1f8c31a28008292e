//! The OpenAPI response rows many routes share, written once and named in the routes'
//! `responses(...)`. The 401 and 412 rows are not here: every `/v2` route checks
//! credentials and the route table says which check the version, so `openapi.rs` adds
//! those two to every operation from the table.

use utoipa::IntoResponses;

use crate::error::ErrorBody;
use crate::wire::Empty;

/// Writes each row as a one-response `IntoResponses` type.
macro_rules! rows {
    ($( $(#[$doc:meta])* $name:ident: $status:tt $body:ty, $description:tt; )*) => {
        $(
            $(#[$doc])*
            #[derive(IntoResponses)]
            #[response(status = $status, description = $description)]
            pub struct $name(pub $body);
        )*
    };
}

rows! {
    /// 503: the store does not answer (the layer adds `Retry-After`).
    StoreDown: 503 ErrorBody, "The store is unavailable";
    /// 404 on a route under an instance.
    NoSuchInstance: 404 ErrorBody, "No such instance";
    /// 413 on a route with a body.
    TooLarge: 413 ErrorBody, "Body over 1 MiB";
    /// 201 of a registration.
    RegisteredNew: 201 Empty, "Registered";
    /// 200 of a removal.
    Removed: 200 Empty, "Removed";
    /// 404 on a route under a service.
    NoSuchService: 404 ErrorBody, "No such service";
    /// 409 of removing a service that has instances.
    ServiceInUse: 409 ErrorBody, "The service still has instances";
    /// 404 on a route under a manifest.
    NoSuchManifest: 404 ErrorBody, "No such manifest";
    /// 404 on a route under an engine.
    NoEngine: 404 ErrorBody, "No such engine";
    /// 404 on a route under a pool.
    NoPool: 404 ErrorBody, "The plan has no pool";
    /// 400 of a delete without the ids OSB asks for.
    IdsMissing: 400 ErrorBody, "service_id or plan_id missing";
    /// 422 of a delete.
    AsyncOrBusy: 422 ErrorBody, "AsyncRequired or ConcurrencyError";
    /// 500 of an operation the backend failed.
    BackendFailed: 500 ErrorBody, "The backend failed";
}
