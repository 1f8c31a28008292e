//! Instances' reports of their own liveness (`PUT .../liveness`): who may send one,
//! and how a storm of them is absorbed without touching the platform's operations.
//!
//! - **Who.** A binding's reporting token (`domain::reporting_token`), for that
//!   binding's instance only; the broker's credentials where
//!   `ESM_LIVENESS_BROKER_REPORTS` allows.
//! - **Where to.** A report is written into the instance's report record
//!   ([`ReportRecord`]), never into the instance's own record, so it never contends
//!   with an operation's compare-and-set. The liveness rounds fold it into the verdict,
//!   and write the instance only when the verdict says something new.
//! - **How often.** Reports are coalesced per instance: the latest waits while the one
//!   before is written, and an instance's record is written at most once per
//!   [`SPACING`] by each replica, however many reporters it has.

use crate::broker::LivenessMonitor;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::domain::binding::{Binding, BindingStatus};
use crate::domain::bounded::Note;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::{Liveness, LivenessStatus, Report, ReportRecord};
use crate::domain::reporting_token::ReportingToken;
use crate::error::{OsbError, OsbResult};

/// The shortest time between two writes of one instance's report record by one
/// replica: the reports that arrive meanwhile are coalesced into the latest.
pub const SPACING: Duration = Duration::from_millis(250);
/// Instances whose reports wait to be written at once; a report for another instance
/// beyond this is refused with 503 until the writers catch up.
pub const MAX_REPORTING: usize = 4096;

/// Who sends a report.
#[derive(Debug, Clone)]
pub enum Reporter {
    /// The broker's credentials (or anyone, when the API has none).
    Broker,
    /// A bearer token, to be checked against the instance's bindings.
    Token(String),
}

/// The reports waiting to be written, by instance: an instance is here while a writer
/// task works on it, with the latest report not yet written (if any).
#[derive(Default)]
pub(super) struct Desk {
    /// A std mutex: held for a lookup or an insert, never across an `.await`.
    pending: std::sync::Mutex<HashMap<String, Option<Report>>>,
}

impl Desk {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Report>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LivenessMonitor<'_> {
    /// Mints binding `binding`'s liveness reporting token and adds it to `credentials`
    /// (`esm_liveness_token`, and `esm_liveness_url` where to send reports when
    /// `ESM_LIVENESS_URL` is set); returns the digest to keep. Credentials that are not
    /// an object, or an id too long to be a binding id, get none.
    pub(in crate::broker) fn hand_out_reporting_token(
        &self,
        binding: &Binding,
        credentials: &mut Value,
    ) -> Option<String> {
        let id = crate::domain::bounded::BindingId::parse(binding.id.as_str()).ok()?;
        if credentials.is_null() {
            *credentials = Value::Object(Map::new());
        }
        let Value::Object(credentials) = credentials else { return None };
        let token = crate::domain::reporting_token::ReportingToken::mint(&id);
        credentials.insert("esm_liveness_token".into(), Value::from(token.expose()));
        if let Some(base) = &self.core.settings.liveness.report_url {
            let id = crate::domain::path::segment(&binding.instance_id);
            let url = format!("{}/v2/et/service_instances/{id}/liveness", base.trim_end_matches('/'));
            credentials.insert("esm_liveness_url".into(), Value::from(url));
        }
        Some(token.digest())
    }

    /// Records what instance `id` reported of itself (`PUT .../liveness`), sent by
    /// `reporter`. Answers the instance's liveness with this report, judged now; the
    /// report itself is written shortly after (coalesced with any that follow).
    pub async fn report(
        &self,
        id: &str,
        reporter: &Reporter,
        status: LivenessStatus,
        ttl: Duration,
        note: Option<Note>,
    ) -> OsbResult<Liveness> {
        self.check_reporter(id, reporter).await?;
        let instance = self.platform_instance(id).await?;
        let clock = self.core.clock();
        let now = clock.millis();
        let expires_at = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let report = Report { status, note, at: now, expires_at };
        let mut liveness = instance.liveness.unwrap_or_else(|| Liveness::unknown(now, clock.timestamp()));
        liveness.reported = Some(report.clone());
        if liveness.judge(now, self.core.settings.liveness.thresholds) {
            liveness.since = clock.timestamp();
        }
        self.file_report(id, report)?;
        Ok(liveness)
    }

    /// An instance's liveness (`GET .../liveness`), with its latest report judged now;
    /// `unknown` until it is first watched.
    pub async fn of(&self, id: &str) -> OsbResult<(ServiceInstance, Liveness)> {
        let instance = self.platform_instance(id).await?;
        let clock = self.core.clock();
        let mut liveness = instance.liveness.clone().unwrap_or_else(|| {
            let mut fresh = Liveness::unknown(clock.millis(), instance.created_at);
            fresh.reason = "not observed yet".into();
            fresh
        });
        if let Some(report) = self.latest_report(id).await? {
            liveness.reported = Some(report);
            if liveness.judge(clock.millis(), self.core.settings.liveness.thresholds) {
                liveness.since = clock.timestamp();
            }
        }
        Ok((instance, liveness))
    }

    /// Instance `id`'s latest report, as written to its report record.
    pub(in crate::broker) async fn latest_report(&self, id: &str) -> OsbResult<Option<Report>> {
        Ok(self.core.records.get::<ReportRecord>(id).await?.map(|v| v.record.report))
    }

    /// The platform's live instance `id`: a pool member is hidden (404) as every other
    /// endpoint hides it.
    async fn platform_instance(&self, id: &str) -> OsbResult<ServiceInstance> {
        self.core
            .records
            .get::<ServiceInstance>(id)
            .await?
            .map(|v| v.record)
            .filter(ServiceInstance::is_platform_instance)
            .ok_or_else(|| OsbError::NotFound(format!("instance {id} does not exist")))
    }

    /// Whether `reporter` may report instance `id`'s liveness. A token is checked
    /// before the instance is looked for, so a wrong one learns nothing of it.
    async fn check_reporter(&self, id: &str, reporter: &Reporter) -> OsbResult<()> {
        let text = match reporter {
            Reporter::Broker if self.core.settings.liveness.broker_reports => return Ok(()),
            Reporter::Broker => {
                return Err(OsbError::Forbidden(
                    "the broker's credentials may not report liveness (ESM_LIVENESS_BROKER_REPORTS is off); \
                     report with the instance's reporting token (a binding's esm_liveness_token)"
                        .into(),
                ));
            }
            Reporter::Token(text) => text,
        };
        let token = ReportingToken::parse(text).ok_or(OsbError::Unauthorized)?;
        let binding = self.core.records.get::<Binding>(token.binding_id()).await?.map(|v| v.record);
        let accepted = binding.is_some_and(|b| {
            b.status == BindingStatus::Bound
                && b.instance_id == id
                && b.liveness_token_sha256.as_deref().is_some_and(|digest| token.matches(digest))
        });
        if accepted { Ok(()) } else { Err(OsbError::Unauthorized) }
    }

    /// Queues `report` as instance `id`'s latest, and starts a writer for the instance
    /// unless one works on it already.
    fn file_report(&self, id: &str, report: Report) -> OsbResult<()> {
        {
            let mut pending = self.room.reports.lock();
            if let Some(slot) = pending.get_mut(id) {
                *slot = Some(report);
                return Ok(());
            }
            if pending.len() >= MAX_REPORTING {
                return Err(OsbError::Unavailable(format!(
                    "reports of {MAX_REPORTING} instances are waiting to be written; retry"
                )));
            }
            pending.insert(id.to_owned(), Some(report));
        }
        let (this, id) = (Arc::clone(self.broker), id.to_owned());
        self.broker.spawn_task(async move { this.liveness().write_reports(id).await });
        Ok(())
    }

    /// Writes instance `id`'s latest report, then looks at the instance; again after
    /// [`SPACING`] if another arrived meanwhile; leaves the desk when none did.
    async fn write_reports(&self, id: String) {
        loop {
            let next = {
                let mut pending = self.room.reports.lock();
                let next = pending.get_mut(&id).and_then(Option::take);
                if next.is_none() {
                    pending.remove(&id);
                }
                next
            };
            let Some(report) = next else { return };
            match self.core.records.upsert(&ReportRecord { instance_id: id.clone(), report: report.clone() }).await {
                Ok(_) => self.look_reported(&id, &report).await,
                Err(e) => tracing::warn!(instance_id = ?id, error = %e, "could not record a liveness report"),
            }
            tokio::select! {
                () = tokio::time::sleep(SPACING) => {}
                () = self.core.shutdown.cancelled() => {
                    self.room.reports.lock().remove(&id);
                    return;
                }
            }
        }
    }
}
