//! The one table of every `/v2` route: its method and path template, the name the audit
//! line gives it, whether it needs `X-Broker-API-Version`, who may call it, and its
//! handler.
//!
//! The router (and so the OpenAPI document utoipa generates from it), the audit line,
//! the version check and the auth layer all read this table; the handlers' OpenAPI
//! attributes name their row (`path = route::PROVISION.path`). No other place in `web`
//! spells a route, so a new route is one row, and it cannot be audited, exempted or
//! documented apart from how it is served.

use axum::http::Method;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use super::{AppState, et, osb};

/// Whether a route needs `X-Broker-API-Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Answered 412 without a 2.12 or later version.
    Checked,
    /// Served without the header: the ElasTest platform reads manifests without any,
    /// and a browser's `EventSource` cannot add headers to the event stream.
    Exempt,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The platform, with the broker's credentials (when they are set).
    Broker,
    /// The broker's credentials, or an instance's reporting token (`Bearer`), which the
    /// handler checks against the instance's bindings (the layer does not read the
    /// store). A token caller is no platform and needs no OSB version.
    BrokerOrReporter,
}

/// One row of the table.
#[derive(Debug)]
pub struct Route {
    /// The method the handler answers (HEAD is served by a GET row, as axum does).
    pub method: Method,
    /// The path template, as axum matches it and as the OpenAPI document names it.
    pub path: &'static str,
    /// The broker operation the audit line names.
    pub audit: &'static str,
    /// Whether the version check applies.
    pub version: Version,
    /// Who may call it.
    pub caller: Caller,
    /// The handler with its OpenAPI operation (what `utoipa_axum::routes!` makes of it).
    mount: fn() -> UtoipaMethodRouter<AppState>,
}

/// Writes each row as a named constant (so a handler's attribute can name its row) and
/// lists them all in [`ROUTES`].
macro_rules! table {
    ($( $name:ident: $method:ident $path:literal $audit:literal $version:ident $caller:ident => $handler:path; )*) => {
        $(
            #[doc = concat!("`", stringify!($method), " ", $path, "`.")]
            pub const $name: Route = Route {
                method: Method::$method,
                path: $path,
                audit: $audit,
                version: Version::$version,
                caller: Caller::$caller,
                mount: || utoipa_axum::routes!($handler),
            };
        )*
        /// Every `/v2` route, in the order of the table.
        pub static ROUTES: &[Route] = &[$($name),*];
    };
}

// The audit names are those the log has always used: the ElasTest routes are named by
// their prefix, and the pools and the inventory, which came later, are "other".
table! {
    CATALOG: GET "/v2/catalog" "catalog" Checked Broker => osb::catalog::catalog;
    PROVISION: PUT "/v2/service_instances/{instance_id}" "provision" Checked Broker => osb::provision::provision;
    UPDATE: PATCH "/v2/service_instances/{instance_id}" "update" Checked Broker => osb::update::update;
    DEPROVISION: DELETE "/v2/service_instances/{instance_id}" "deprovision" Checked Broker
        => osb::deprovision::deprovision;
    GET_INSTANCE: GET "/v2/service_instances/{instance_id}" "fetch_instance" Checked Broker
        => osb::get_instance::get_instance;
    LAST_OPERATION: GET "/v2/service_instances/{instance_id}/last_operation" "instance_last_operation" Checked Broker
        => osb::last_operation::last_operation;
    BIND: PUT "/v2/service_instances/{instance_id}/service_bindings/{binding_id}" "bind" Checked Broker
        => osb::bind::bind;
    UNBIND: DELETE "/v2/service_instances/{instance_id}/service_bindings/{binding_id}" "unbind" Checked Broker
        => osb::unbind::unbind;
    GET_BINDING: GET "/v2/service_instances/{instance_id}/service_bindings/{binding_id}" "fetch_binding" Checked Broker
        => osb::get_binding::get_binding;
    LAST_BINDING_OPERATION:
        GET "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation" "binding_last_operation"
        Checked Broker => osb::last_binding_operation::last_binding_operation;
    REGISTER_SERVICE: PUT "/v2/et/catalog" "et_catalog" Checked Broker => et::registration::register_service;
    DELETE_SERVICE_BY_QUERY: DELETE "/v2/et/catalog" "et_catalog" Checked Broker
        => et::registration::delete_service_by_query;
    DELETE_SERVICE: DELETE "/v2/et/catalog/{service_id}" "et_catalog" Checked Broker
        => et::registration::delete_service;
    LIST_MANIFESTS: GET "/v2/et/manifest" "et_manifest" Exempt Broker => et::registration::list_manifests;
    REGISTER_MANIFEST: PUT "/v2/et/manifest/{manifest_id}" "et_manifest" Checked Broker
        => et::registration::register_manifest;
    GET_MANIFEST: GET "/v2/et/manifest/{manifest_id}" "et_manifest" Exempt Broker => et::registration::get_manifest;
    DELETE_MANIFEST: DELETE "/v2/et/manifest/{manifest_id}" "et_manifest" Checked Broker
        => et::registration::delete_manifest;
    ET_INSTANCES: GET "/v2/et/service_instances" "et_service_instances" Checked Broker
        => et::instances::list_instances;
    ET_INSTANCE: GET "/v2/et/service_instances/{instance_id}" "et_service_instances" Checked Broker
        => et::instances::get_instance;
    ET_BINDINGS: GET "/v2/et/service_instances/{instance_id}/bindings" "et_service_instances" Checked Broker
        => et::list_bindings::list_bindings;
    EVENTS: GET "/v2/et/events" "et_events" Exempt Broker => et::events::events;
    GET_LIVENESS: GET "/v2/et/service_instances/{instance_id}/liveness" "et_service_instances" Checked Broker
        => et::liveness::get_liveness;
    REPORT_LIVENESS: PUT "/v2/et/service_instances/{instance_id}/liveness" "et_service_instances" Checked
        BrokerOrReporter => et::liveness::report_liveness;
    POOLS: GET "/v2/et/pools" "other" Checked Broker => et::pools::list_pools;
    GET_POOL: GET "/v2/et/pools/{plan_id}" "other" Checked Broker => et::pools::get_pool;
    SET_POOL: PUT "/v2/et/pools/{plan_id}" "other" Checked Broker => et::pools::set_pool;
    DELETE_POOL: DELETE "/v2/et/pools/{plan_id}" "other" Checked Broker => et::pools::delete_pool;
    INVENTORY: GET "/v2/et/inventory" "other" Checked Broker => et::inventory::inventory;
    ENGINES: GET "/v2/et/engines" "other" Checked Broker => et::engines::list_engines;
    GET_ENGINE: GET "/v2/et/engines/{name}" "other" Checked Broker => et::engines::get_engine;
    PUT_ENGINE: PUT "/v2/et/engines/{name}" "other" Checked Broker => et::engines::put_engine;
    DELETE_ENGINE: DELETE "/v2/et/engines/{name}" "other" Checked Broker => et::engines::delete_engine;
    CORDON_ENGINE: POST "/v2/et/engines/{name}/cordon" "other" Checked Broker => et::engines::cordon_engine;
    UNCORDON_ENGINE: POST "/v2/et/engines/{name}/uncordon" "other" Checked Broker => et::engines::uncordon_engine;
    DRAIN_ENGINE: POST "/v2/et/engines/{name}/drain" "other" Checked Broker => et::engines::drain_engine;
    INSTANCE_RESOURCES: GET "/v2/et/service_instances/{instance_id}/resources" "et_service_instances" Checked Broker
        => et::inventory::instance_resources;
}

/// The audit name of a request that matched no route (the fallback's 404).
const UNROUTED: &str = "other";

impl Route {
    /// The row serving `method` on the matched template `path`.
    pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
        ROUTES.iter().find(|row| row.method == method && row.path == path)
    }

    /// The row of an OpenAPI operation (`"get"`, `"put"`, ... on a template).
    pub fn of_operation(method: &str, path: &str) -> Option<&'static Route> {
        ROUTES.iter().find(|row| row.method.as_str().eq_ignore_ascii_case(method) && row.path == path)
    }

    /// Whether a request to this row is answered without `X-Broker-API-Version`.
    pub fn exempt(&self) -> bool {
        self.version == Version::Exempt
    }
}

/// The audit name of a request: its row's (`row`, found for the matched template). A
/// method no row serves on a matched template (answered 405, or HEAD served by GET)
/// takes the name of the template's GET row, or of its first row; a path no route
/// matches is "other".
pub fn audit_name(row: Option<&Route>, matched: Option<&str>) -> &'static str {
    if let Some(row) = row {
        return row.audit;
    }
    let Some(path) = matched else {
        return UNROUTED;
    };
    let on_path = || ROUTES.iter().filter(move |row| row.path == path);
    on_path().find(|row| row.method == Method::GET).or_else(|| on_path().next()).map_or(UNROUTED, |row| row.audit)
}

/// The `/v2` routes (unlayered) and the OpenAPI document generated from them, over the
/// document's fixed parts.
pub fn mount(doc: utoipa::openapi::OpenApi) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    // Rows sharing a template merge: axum joins their method routers, utoipa their
    // operations.
    ROUTES.iter().fold(OpenApiRouter::with_openapi(doc), |router, row| router.routes((row.mount)())).split_for_parts()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler's attribute names its row's path; its method must be the row's too.
    #[test]
    fn every_row_mounts_a_handler_documented_as_the_row() {
        for row in ROUTES {
            let (_, paths, _) = (row.mount)();
            let documented: Vec<_> = paths.paths.iter().collect();
            assert_eq!(documented.len(), 1, "{} {}", row.method, row.path);
            let (path, item) = documented[0];
            assert_eq!(path, row.path);
            let operation = match row.method {
                Method::GET => &item.get,
                Method::PUT => &item.put,
                Method::PATCH => &item.patch,
                Method::DELETE => &item.delete,
                Method::POST => &item.post,
                _ => &None,
            };
            assert!(operation.is_some(), "{} {} is documented with another method", row.method, row.path);
        }
    }

    #[test]
    fn no_two_rows_serve_the_same_request() {
        for (i, row) in ROUTES.iter().enumerate() {
            let twin = ROUTES[i + 1..].iter().find(|other| other.method == row.method && other.path == row.path);
            assert!(twin.is_none(), "{} {} twice", row.method, row.path);
        }
    }

    #[test]
    fn a_method_without_a_row_is_audited_as_its_template() {
        let audit =
            |method: Method, path: Option<&str>| audit_name(path.and_then(|path| Route::find(&method, path)), path);
        assert_eq!(audit(Method::PUT, Some(PROVISION.path)), "provision");
        assert_eq!(audit(Method::POST, Some(PROVISION.path)), "fetch_instance");
        assert_eq!(audit(Method::HEAD, Some(EVENTS.path)), "et_events");
        assert_eq!(audit(Method::GET, Some(REGISTER_SERVICE.path)), "et_catalog");
        assert_eq!(audit(Method::PATCH, Some(DELETE_SERVICE.path)), "et_catalog");
        assert_eq!(audit(Method::GET, None), "other");
    }
}
