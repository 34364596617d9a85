//! berth's own records on a Docker Engine: the environment's lease and its applied commit.
//!
//! - Lease: a volume `berth-lease-<env>` whose labels hold holder, purpose, start, expiry and
//!   a random token. The Engine creates volumes under a per-name lock and returns the existing
//!   volume to a second creator, so reading the token back tells who won. Volume labels cannot
//!   change, so extending adds a volume `berth-lease-<env>-until-<unix>` with the holder's
//!   token; the lease's expiry is the latest renewal by its own holder.
//! - Applied commit: a volume `berth-applied-<env>` labelled with the commit (recording
//!   replaces it; the apply holds the host's lease while it does).

use std::collections::{BTreeMap, HashMap};

use bollard::errors::Error as BollardError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};

use super::{DockerDriver, DockerError, not_found};
use crate::driver::{Claim, LeaseRecord, lease_name};

const LEASE_LABEL: &str = "io.berth.lease";
const CANCELLED_TENANT_LABEL: &str = "io.berth.cancelled-tenant";
const CANCELLED_AT_LABEL: &str = "io.berth.cancelled-at";
const APPLIED_LABEL: &str = "io.berth.applied-commit";
/// The tenant field of errors about berth's own records.
const RECORDS: &str = "(berth records)";

fn labels_of(record: &LeaseRecord) -> HashMap<String, String> {
    record
        .fields()
        .into_iter()
        .map(|(k, v)| (format!("{LEASE_LABEL}.{}", k.to_lowercase()), v))
        .collect()
}

fn record_of(labels: &HashMap<String, String>) -> Option<LeaseRecord> {
    let fields: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(&format!("{LEASE_LABEL}."))
                .map(|k| (k.to_uppercase(), v.clone()))
        })
        .collect();
    LeaseRecord::from_fields(&fields)
}

/// Name of a tenant's cancellation record volume.
fn cancelled_volume(environment: &str, tenant: &str) -> String {
    format!("berth-cancelled.{environment}.{tenant}")
}

/// Whether a volume is one of berth's records (never a tenant object).
pub(super) fn is_record_volume(name: &str) -> bool {
    name.starts_with("berth-lease-")
        || name.starts_with("berth-applied-")
        || name.starts_with("berth-cancelled.")
        || name.starts_with(super::adopted::PREFIX)
}

/// The cancellation a record volume carries for `environment`, if it is one.
pub(super) fn cancellation_of(
    environment: &str,
    name: &str,
    labels: &HashMap<String, String>,
) -> Option<(String, u64)> {
    let tenant = labels.get(CANCELLED_TENANT_LABEL)?;
    if name != cancelled_volume(environment, tenant) {
        return None;
    }
    Some((
        tenant.clone(),
        labels.get(CANCELLED_AT_LABEL)?.parse().ok()?,
    ))
}

impl DockerDriver {
    /// Record now as the moment `tenant`'s cancellation was applied.
    pub(super) async fn record_cancellation(&self, tenant: &str) -> Result<(), DockerError> {
        let name = cancelled_volume(&self.host().environment, tenant);
        self.create_labelled(
            &name,
            HashMap::from([
                (CANCELLED_TENANT_LABEL.to_string(), tenant.to_string()),
                (
                    CANCELLED_AT_LABEL.to_string(),
                    crate::clock::now_unix().to_string(),
                ),
            ]),
        )
        .await
        .map(|_| ())
    }

    /// Forget `tenant`'s cancellation record.
    pub(super) async fn clear_cancellation(&self, tenant: &str) -> Result<(), DockerError> {
        self.remove_volume_if_there(&cancelled_volume(&self.host().environment, tenant))
            .await
    }

    fn records_error(&self, call: String) -> impl Fn(BollardError) -> DockerError + '_ {
        self.api(RECORDS, call)
    }

    fn lease_volume(&self) -> String {
        lease_name(&self.host().environment)
    }

    fn applied_volume(&self) -> String {
        format!("berth-applied-{}", self.host().environment)
    }

    pub(super) async fn create_labelled(
        &self,
        name: &str,
        mut labels: HashMap<String, String>,
    ) -> Result<HashMap<String, String>, DockerError> {
        // The environment label lets tooling (and test cleanup) find berth's records.
        labels.insert(
            "io.berth.environment".to_string(),
            self.host().environment.clone(),
        );
        self.count();
        let volume = self
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..VolumeCreateRequest::default()
            })
            .await
            .map_err(self.records_error(format!("create volume {name}")))?;
        Ok(volume.labels)
    }

    pub(super) async fn remove_volume_if_there(&self, name: &str) -> Result<(), DockerError> {
        self.count();
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Err(e) if !not_found(&e) => Err(self.records_error(format!("remove volume {name}"))(e)),
            _ => Ok(()),
        }
    }

    /// Renewal volumes of the lease with the records they carry.
    async fn renewals(&self) -> Result<Vec<(String, LeaseRecord)>, DockerError> {
        let prefix = format!("{}-until-", self.lease_volume());
        let filters = HashMap::from([("name".to_string(), vec![prefix.clone()])]);
        self.count();
        let list = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(self.records_error("list volumes".into()))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.name.starts_with(&prefix))
            .filter_map(|v| record_of(&v.labels).map(|r| (v.name, r)))
            .collect())
    }

    /// A lease record with the latest renewal by its own holder applied.
    async fn extended(&self, mut record: LeaseRecord) -> Result<LeaseRecord, DockerError> {
        for (_, renewal) in self.renewals().await? {
            if renewal.token == record.token {
                record.expires = record.expires.max(renewal.expires);
            }
        }
        Ok(record)
    }

    /// See [`crate::driver::AnyDriver::lease_claim`].
    ///
    /// # Errors
    /// Engine failures, or a volume with the lease's name that is not a lease.
    pub async fn lease_claim(&self, record: &LeaseRecord) -> Result<Claim, DockerError> {
        let name = self.lease_volume();
        let mut labels = labels_of(record);
        labels.insert(LEASE_LABEL.to_string(), "true".to_string());
        let found = self.create_labelled(&name, labels).await?;
        match record_of(&found) {
            Some(current) if current.token == record.token => Ok(Claim::Taken),
            Some(current) => Ok(Claim::Held(self.extended(current).await?)),
            None => Err(DockerError::NotALease {
                host: self.host().clone(),
                volume: name,
            }),
        }
    }

    /// See [`crate::driver::AnyDriver::lease_read`].
    ///
    /// # Errors
    /// Engine failures.
    pub async fn lease_read(&self) -> Result<Option<LeaseRecord>, DockerError> {
        let name = self.lease_volume();
        self.count();
        match self.docker.inspect_volume(&name).await {
            Ok(volume) => match record_of(&volume.labels) {
                Some(record) => Ok(Some(self.extended(record).await?)),
                None => Ok(None),
            },
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.records_error(format!("inspect volume {name}"))(e)),
        }
    }

    /// See [`crate::driver::AnyDriver::lease_extend`].
    ///
    /// # Errors
    /// Engine failures.
    pub async fn lease_extend(&self, record: &LeaseRecord) -> Result<(), DockerError> {
        let name = format!("{}-until-{}", self.lease_volume(), record.expires);
        self.create_labelled(&name, labels_of(record)).await?;
        // Older renewals of ours are superseded.
        for (old, renewal) in self.renewals().await? {
            if old != name && renewal.token == record.token {
                self.remove_volume_if_there(&old).await?;
            }
        }
        Ok(())
    }

    /// See [`crate::driver::AnyDriver::lease_clear`].
    ///
    /// # Errors
    /// Engine failures.
    pub async fn lease_clear(&self) -> Result<(), DockerError> {
        for (renewal, _) in self.renewals().await? {
            self.remove_volume_if_there(&renewal).await?;
        }
        self.remove_volume_if_there(&self.lease_volume()).await
    }

    /// See [`crate::driver::AnyDriver::applied_commit`].
    ///
    /// # Errors
    /// Engine failures.
    pub async fn applied_commit(&self) -> Result<Option<String>, DockerError> {
        let name = self.applied_volume();
        self.count();
        match self.docker.inspect_volume(&name).await {
            Ok(v) => Ok(v.labels.get(APPLIED_LABEL).cloned()),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.records_error(format!("inspect volume {name}"))(e)),
        }
    }

    /// See [`crate::driver::AnyDriver::record_applied`].
    ///
    /// # Errors
    /// Engine failures.
    pub async fn record_applied(&self, commit: &str) -> Result<(), DockerError> {
        let name = self.applied_volume();
        self.remove_volume_if_there(&name).await?;
        self.create_labelled(
            &name,
            HashMap::from([(APPLIED_LABEL.to_string(), commit.to_string())]),
        )
        .await
        .map(|_| ())
    }
}
