//! The ElasTest extensions and esm's own routes under `/v2/et`: registration, the
//! instance view, an instance's bindings, liveness, warm pools, the inventory and the
//! change events. Kept apart from the OSB routes.

pub mod engines;
pub mod events;
pub mod instances;
pub mod inventory;
pub mod list_bindings;
pub mod liveness;
pub mod pools;
pub mod registration;
