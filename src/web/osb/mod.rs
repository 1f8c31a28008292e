//! The Open Service Broker routes, a file per endpoint: each reads the request into
//! wire types, asks the broker, and turns its answer into the status OSB asks for.

pub mod bind;
pub mod catalog;
pub mod deprovision;
pub mod get_binding;
pub mod get_instance;
pub mod last_binding_operation;
pub mod last_operation;
pub mod provision;
pub mod unbind;
pub mod update;
