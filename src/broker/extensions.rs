//! The ElasTest instance view: instances with live deployment details.

use crate::broker::Instances;
use crate::domain::liveness::LivenessStatus;
use std::sync::Arc;

use futures_util::{Stream, StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::operation::OperationState;
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};
use crate::store::index;
use crate::wire::{EtInstance, EtState};

/// What an instance listing selects; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Instances of this offering.
    pub service_id: Option<String>,
    /// Instances on this plan.
    pub plan_id: Option<String>,
    /// Instances whose last operation is in this state.
    pub state: Option<OperationState>,
    /// Instances with this liveness.
    pub liveness: Option<LivenessStatus>,
    /// Instances deployed by this backend.
    pub backend: Option<String>,
    /// Instances placed on this engine.
    pub engine: Option<String>,
}

impl InstanceFilter {
    /// The index filters, the most selective first (the embedded store intersects
    /// them all in its indexes starting from the first; MongoDB serves the first from
    /// its index).
    fn index_filters(&self) -> Vec<(String, String)> {
        let filters = [
            (index::LIVENESS, self.liveness.filter(|l| *l != LivenessStatus::Up).map(LivenessStatus::as_str)),
            (index::PLAN_ID, self.plan_id.as_deref()),
            (index::SERVICE_ID, self.service_id.as_deref()),
            (index::BACKEND, self.backend.as_deref()),
            (index::STATE, self.state.map(OperationState::as_str)),
            // Most instances are up: the least selective filter goes last.
            (index::LIVENESS, self.liveness.filter(|l| *l == LivenessStatus::Up).map(LivenessStatus::as_str)),
        ];
        let mut chosen: Vec<(String, String)> =
            filters.into_iter().filter_map(|(f, v)| Some((f.to_owned(), v?.to_owned()))).collect();
        if let Some(engine) = &self.engine {
            chosen.push((index::ENGINE.to_owned(), engine.clone()));
        }
        // Pool members are indexed by engine too: only live instances are listed.
        if chosen.is_empty() || self.engine.is_some() {
            chosen.push((index::LIVE.to_owned(), "1".to_owned()));
        }
        chosen
    }
}

/// One page of instances, and the id to continue after if there may be more.
#[derive(Debug)]
pub struct InstancePage {
    /// The instances, in id order.
    pub instances: Vec<EtInstance>,
    /// The last id read, when more may follow.
    pub next_after: Option<String>,
}

impl Instances<'_> {
    /// `GET /v2/et/service_instances` without paging: every selected instance, read from
    /// the store a page at a time as the stream is consumed. The first instance is read
    /// before this returns, so an unavailable store is an error, not a cut-off stream.
    pub async fn et_instances(
        &self,
        filter: &InstanceFilter,
    ) -> OsbResult<impl Stream<Item = OsbResult<EtInstance>> + Send + 'static> {
        let registry = self.broker.registrar().registry().await?.record;
        let this = Arc::clone(self.broker);
        let views = self.core.records.scan::<ServiceInstance>(filter.index_filters()).map_err(OsbError::from).and_then(
            move |found| {
                let (this, registry) = (Arc::clone(&this), Arc::clone(&registry));
                async move { this.instances().et_view(&registry, found.record).await }
            },
        );
        let mut views = Box::pin(views);
        let first = views.try_next().await?;
        Ok(futures_util::stream::iter(first.map(Ok)).chain(views))
    }

    /// `GET /v2/et/service_instances?limit=&after=`: at most `limit` selected instances
    /// after the id `after`.
    pub async fn et_instances_page(
        &self,
        filter: &InstanceFilter,
        after: Option<String>,
        limit: usize,
    ) -> OsbResult<InstancePage> {
        let registry = self.broker.registrar().registry().await?.record;
        let (records, next_after) = self.instance_records_page(filter, after, limit).await?;
        let mut instances = Vec::with_capacity(records.len());
        for record in records {
            instances.push(self.et_view(&registry, record).await?);
        }
        Ok(InstancePage { instances, next_after })
    }

    /// At most `limit` selected instance records after the id `after`, as stored (no
    /// backend is asked), and the id to continue after if there may be more.
    pub async fn instance_records_page(
        &self,
        filter: &InstanceFilter,
        after: Option<String>,
        limit: usize,
    ) -> OsbResult<(Vec<ServiceInstance>, Option<String>)> {
        self.core.page_of(filter.index_filters(), after, limit).await
    }

    /// `GET /v2/et/service_instances/{instance_id}`.
    pub async fn et_instance(&self, instance_id: &str) -> OsbResult<EtInstance> {
        let instance = self
            .live_instance(instance_id)
            .await?
            .ok_or_else(|| OsbError::NotFound(format!("instance {instance_id} does not exist")))?
            .record;
        self.et_view(&self.broker.registrar().registry().await?.record, instance).await
    }

    /// The original's instance shape: `context` holds the backend's live details plus
    /// `id` and `manifest_id` (which, unlike the original, backend keys cannot
    /// overwrite), `service_type` the offering, `state` the last operation.
    async fn et_view(&self, registry: &Registry, instance: ServiceInstance) -> OsbResult<EtInstance> {
        let service = registry.service(&instance.service_id).cloned().ok_or_else(|| {
            OsbError::Internal(format!("service {} of instance {} is gone", instance.service_id, instance.id))
        })?;
        let mut context = Map::new();
        let mut deployment = Vec::new();
        let mut problem = None;
        let info = match self.broker.registrar().instance_backend(registry, &instance).await {
            Ok((backend, manifest)) => backend.info(&instance.deployed(), &manifest).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match info {
            Ok(info) => {
                context.extend(info.flat);
                deployment = info.containers;
                problem = info.problem;
            }
            Err(e) => {
                context.insert("esm_info_error".into(), json!(e));
            }
        }
        context.insert("id".into(), Value::String(instance.id.clone()));
        context.insert("manifest_id".into(), Value::String(instance.manifest_id.clone()));
        let mut state = match instance.operations.last() {
            Some(op) => EtState { state: op.state, description: op.description.clone() },
            None => EtState { state: OperationState::Succeeded, description: None },
        };
        let operation_state = state.state;
        // A provisioned instance whose containers died or vanished is reported as such.
        if let Some(problem) = problem
            && state.state == OperationState::Succeeded
            && instance.status == InstanceStatus::Provisioned
        {
            state = EtState { state: OperationState::Failed, description: Some(problem) };
        }
        Ok(EtInstance {
            context,
            service_type: service,
            plan_id: instance.plan_id.clone(),
            operation_state,
            liveness: instance.liveness_status(),
            created_at: instance.created_at.to_string(),
            engine: instance.engine().to_owned(),
            state,
            deployment,
        })
    }
}
