//! The order services start in: every service after the services it depends on.

use std::collections::{BTreeMap, BTreeSet};

use super::Service;

/// A start order that puts dependencies first (Kahn's algorithm: a loop, not
/// recursion, because the chain's length is the manifest author's to choose); among
/// services that are ready together, by name. A cycle is an error that names a
/// service on it.
pub(super) fn start_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, String> {
    // How many dependencies each service still waits for, and who waits for whom.
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, service) in services {
        waiting.insert(name, service.depends_on.len());
        for dependency in service.depends_on.keys() {
            dependents.entry(dependency.as_str()).or_default().push(name);
        }
    }
    let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(name, _)| *name).collect();
    let mut order = Vec::with_capacity(services.len());
    while let Some(name) = ready.pop_first() {
        order.push(name.to_owned());
        for dependent in dependents.get(name).into_iter().flatten() {
            let count = waiting.get_mut(dependent).expect("every dependent is a service");
            *count -= 1;
            if *count == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() < services.len() {
        // What is left waits on a cycle; name the first of it.
        let stuck = waiting.iter().find(|(_, n)| **n > 0).map(|(name, _)| *name).unwrap_or_default();
        return Err(format!("depends_on forms a cycle through service {stuck}"));
    }
    Ok(order)
}
