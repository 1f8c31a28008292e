//! The labels esm puts on everything it creates on a container engine. Listing by
//! label (never by guessing names) is how deprovision, reconciliation and the tests
//! find an instance's containers, networks and volumes.

use std::collections::HashMap;

/// The instance a resource belongs to (the platform's instance id, verbatim).
pub const INSTANCE: &str = "esm.instance_id";
/// The manifest it was deployed from.
pub const MANIFEST: &str = "esm.manifest_id";
/// The manifest service a container runs.
pub const SERVICE: &str = "esm.service";
/// On volumes marked `x-esm-keep`: survive deprovision.
pub const KEEP: &str = "esm.keep";

/// The labels of a resource of `instance_id`.
pub fn for_instance(instance_id: &str, manifest_id: &str) -> HashMap<String, String> {
    HashMap::from([(INSTANCE.to_owned(), instance_id.to_owned()), (MANIFEST.to_owned(), manifest_id.to_owned())])
}

/// An engine list filter: resources of `instance_id`.
pub fn filter_instance(instance_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{INSTANCE}={instance_id}")])])
}

/// An engine list filter: every resource esm made.
pub fn filter_any() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![INSTANCE.to_owned()])])
}
