use axum::http::HeaderMap;
use serde_json::{Map, json};

use super::*;

fn at(minor: u32) -> ApiVersion {
    ApiVersion(minor)
}

#[test]
fn the_header_names_the_version_and_its_absence_the_newest() {
    let mut headers = HeaderMap::new();
    assert_eq!(ApiVersion::of(&headers), ApiVersion::NEWEST);
    headers.insert("x-broker-api-version", "2.14".parse().expect("value"));
    assert_eq!(ApiVersion::of(&headers), at(14));
    let mut underscored = HeaderMap::new();
    underscored.insert("x_broker_api_version", " 2.13 ".parse().expect("value"));
    assert_eq!(ApiVersion::of(&underscored), at(13));
    // What the version check accepts, this reads the same way.
    headers.insert("x-broker-api-version", "2.14.1".parse().expect("value"));
    assert_eq!(ApiVersion::of(&headers), at(14));
    assert_eq!(ApiVersion::parse("3.0"), None);
}

#[test]
fn a_field_appears_from_its_version_on() {
    let metadata = || {
        let mut labels = Map::new();
        labels.insert("k".into(), json!("v"));
        let mut attributes = Map::new();
        attributes.insert("a".into(), json!(1));
        Some(InstanceMetadata { labels, attributes })
    };
    let provision = |minor| ProvisionResponse { metadata: metadata(), ..Default::default() }.for_version(at(minor));
    assert!(provision(15).metadata.is_none());
    let at_16 = provision(16).metadata.expect("labels at 2.16");
    assert!(at_16.attributes.is_empty() && !at_16.labels.is_empty());
    assert!(!provision(17).metadata.expect("2.17").attributes.is_empty());

    let op = |minor| {
        LastOperationResponse {
            state: crate::domain::operation::OperationState::Failed,
            description: None,
            instance_usable: Some(true),
            update_repeatable: Some(false),
        }
        .for_version(at(minor))
    };
    assert_eq!((op(15).instance_usable, op(15).update_repeatable), (None, None));
    assert_eq!((op(16).instance_usable, op(16).update_repeatable), (Some(true), Some(false)));

    let binding = |minor| {
        BindingResponse {
            endpoints: Some(Vec::new()),
            metadata: Some(BindingMetadata {
                expires_at: Some(crate::domain::time::Timestamp::from_millis(1)),
                renew_before: Some(crate::domain::time::Timestamp::from_millis(2)),
            }),
            operation: Some("op".into()),
            ..Default::default()
        }
        .for_version(at(minor))
    };
    assert!(binding(13).operation.is_none() && binding(14).operation.is_some());
    assert!(binding(14).endpoints.is_none() && binding(15).endpoints.is_some());
    assert!(binding(15).metadata.is_none());
    assert!(binding(16).metadata.is_some_and(|m| m.renew_before.is_none()));
    assert!(binding(17).metadata.is_some_and(|m| m.renew_before.is_some()));

    let update =
        |minor| UpdateResponse { dashboard_url: Some("d".into()), ..Default::default() }.for_version(at(minor));
    assert!(update(13).dashboard_url.is_none() && update(14).dashboard_url.is_some());
}

#[test]
fn errors_carry_failure_flags_from_2_16() {
    let failed = OsbError::OperationFailed {
        description: "x".into(),
        instance_usable: Some(true),
        update_repeatable: Some(true),
    };
    assert!(failed.clone().for_version(at(15)).body().instance_usable.is_none());
    assert!(failed.for_version(at(16)).body().instance_usable.is_some());
}

#[test]
fn every_field_is_in_a_version_esm_speaks() {
    for field in [
        Field::PlanSchemas,
        Field::Retrievable,
        Field::UpdateDashboardUrl,
        Field::AsyncBindings,
        Field::AllowContextUpdates,
        Field::PlanUpdateable,
        Field::MaximumPollingDuration,
        Field::MaintenanceInfo,
        Field::BindingEndpoints,
        Field::FailureFlags,
        Field::InstanceLabels,
        Field::BindingExpiry,
        Field::InstanceAttributes,
        Field::BindingRenewal,
        Field::BindingRotatable,
    ] {
        assert!((13..=NEWEST_MINOR).contains(&field.since()), "{field:?}");
        assert!(ApiVersion::NEWEST.has(field) && !at(12).has(field), "{field:?}");
    }
}
