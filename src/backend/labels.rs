//! The labels esm puts on everything it creates on a container engine. Listing by
//! label (never by guessing names) is how deprovision, reconciliation and the tests
//! find an instance's containers, networks and volumes.

use std::collections::HashMap;

/// The esm deployment that made a resource (`ESM_NAME`): several esm deployments may
/// share an engine, and each reconciles only what it made.
pub const OWNER: &str = "esm.owner";
/// The instance a resource belongs to (the platform's instance id, verbatim).
pub const INSTANCE: &str = "esm.instance_id";
/// The manifest it was deployed from.
pub const MANIFEST: &str = "esm.manifest_id";
/// The manifest service a container runs.
pub const SERVICE: &str = "esm.service";
/// On volumes marked `x-esm-keep`: survive deprovision.
pub const KEEP: &str = "esm.keep";

/// Labels under this prefix are esm's: a manifest may not set them (a rule of the
/// manifest language, which registration checks).
pub const RESERVED_PREFIX: &str = crate::manifest::RESERVED_LABEL_PREFIX;

/// A manifest's labels with esm's on top: esm's always win (registration refuses
/// manifests that set them; this keeps it so whatever a stored manifest says).
pub fn with_esm_labels<'a>(
    manifest: impl IntoIterator<Item = (&'a String, &'a String)>,
    esm: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = manifest
        .into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(esm.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The labels of a resource of `instance_id`.
pub fn for_instance(owner: &str, instance_id: &str, manifest_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (OWNER.to_owned(), owner.to_owned()),
        (INSTANCE.to_owned(), instance_id.to_owned()),
        (MANIFEST.to_owned(), manifest_id.to_owned()),
    ])
}

/// An engine list filter: resources of `instance_id` made by `owner`.
pub fn filter_instance(owner: &str, instance_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{OWNER}={owner}"), format!("{INSTANCE}={instance_id}")])])
}

/// An engine list filter: every instance resource `owner` made.
pub fn filter_owner(owner: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{OWNER}={owner}"), INSTANCE.to_owned()])])
}
