//! berth's own records on a Dokku host: the environment's lease and its applied commit.
//!
//! - Lease: an app `berth-lease-<env>`. `apps:create` is atomic (a second create answers
//!   "Name is already taken"), so creating the app is taking the lease; holder, purpose,
//!   start, expiry and token are its config; extending rewrites the expiry; clearing destroys
//!   the app.
//! - Applied commit: a key `APPLIED_<ENV>` in the config of the record app `berth-state`.
//!
//! Neither app is ever deployed or listed as a tenant app (the scan skips them).

use std::collections::BTreeMap;

use super::command::{STATE_APP, Tolerate, command, config_set};
use super::transport::Output;
use super::{DokkuDriver, DokkuError, RemoteCommand, parse};
use crate::driver::{Claim, LeaseRecord, lease_name};

/// The tenant field of errors about berth's own records.
const RECORDS: &str = "(berth records)";

/// The key of an environment's applied commit in the record app.
pub(super) fn applied_key(environment: &str) -> String {
    format!("APPLIED_{}", environment.to_uppercase().replace('-', "_"))
}

/// The key of a tenant's cancellation record in the record app.
fn cancelled_key(environment: &str, tenant: &str) -> String {
    let up = |s: &str| s.to_uppercase().replace('-', "_");
    format!("CANCELLED_{}__{}", up(environment), up(tenant))
}

/// The tenants of `environment` with a cancellation record, from the record app's config.
pub(super) fn cancellations(
    environment: &str,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, u64> {
    let prefix = cancelled_key(environment, "");
    config
        .iter()
        .filter_map(|(k, v)| {
            let tenant = k.strip_prefix(&prefix)?.to_lowercase().replace('_', "-");
            Some((tenant, v.parse().ok()?))
        })
        .collect()
}

impl DokkuDriver {
    fn lease_app(&self) -> String {
        lease_name(&self.host().environment)
    }

    fn build(
        &self,
        built: Result<RemoteCommand, super::command::CommandError>,
    ) -> Result<RemoteCommand, DokkuError> {
        built.map_err(|source| DokkuError::Build {
            host: self.host().clone(),
            tenant: RECORDS.into(),
            source,
        })
    }

    fn failed(&self, cmd: &RemoteCommand, app: &str, out: &Output) -> DokkuError {
        DokkuError::Command {
            host: self.host().clone(),
            tenant: RECORDS.into(),
            app: Some(app.to_string()),
            command: cmd.display.clone(),
            code: out.code,
            stderr_tail: parse::tail(
                if out.stderr.trim().is_empty() {
                    &out.stdout
                } else {
                    &out.stderr
                },
                3,
            ),
        }
    }

    /// Run a command that must succeed.
    async fn must(&self, cmd: &RemoteCommand, app: &str) -> Result<Output, DokkuError> {
        let out = self.run_read(cmd).await?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            Err(self.failed(cmd, app, &out))
        }
    }

    /// The config of one of berth's apps; `None` when the app does not exist (exit 20).
    async fn record_config(
        &self,
        app: &str,
    ) -> Result<Option<BTreeMap<String, String>>, DokkuError> {
        let cmd = self.build(command(&["config:export", "--format", "json", app]))?;
        let out = self.run_read(&cmd).await?;
        match out.code {
            Some(0) => parse::config_export(&out.stdout)
                .map(Some)
                .map_err(|source| DokkuError::Parse {
                    host: self.host().clone(),
                    command: cmd.display.clone(),
                    source,
                }),
            Some(20) => Ok(None),
            _ => Err(self.failed(&cmd, app, &out)),
        }
    }

    /// See [`crate::driver::AnyDriver::lease_claim`].
    ///
    /// # Errors
    /// Transport failures and unexpected answers.
    pub async fn lease_claim(&self, record: &LeaseRecord) -> Result<Claim, DokkuError> {
        let app = self.lease_app();
        let create = self.build(command(&["apps:create", &app]))?;
        let out = self.run_read(&create).await?;
        if out.code == Some(0) {
            let write = self.build(config_set(&app, &record.fields()))?;
            self.must(&write, &app).await?;
            // Lease written first (it is what excludes other runs), then the default vhost
            // Dokku gave the new app goes: it is never deployed and must not claim a name.
            self.disable_vhost(&app).await?;
            return Ok(Claim::Taken);
        }
        let taken = format!("{}{}", out.stdout, out.stderr).contains("Name is already taken");
        if !taken {
            return Err(self.failed(&create, &app, &out));
        }
        Ok(match self.lease_read().await? {
            Some(held) => Claim::Held(held),
            // Released between our create and our read: try again next time round.
            None => Claim::Held(LeaseRecord::incomplete()),
        })
    }

    /// See [`crate::driver::AnyDriver::lease_read`].
    ///
    /// # Errors
    /// Transport failures and unreadable output.
    pub async fn lease_read(&self) -> Result<Option<LeaseRecord>, DokkuError> {
        let Some(config) = self.record_config(&self.lease_app()).await? else {
            return Ok(None);
        };
        // An app without fields: a holder that crashed between create and write.
        Ok(Some(
            LeaseRecord::from_fields(&config).unwrap_or_else(LeaseRecord::incomplete),
        ))
    }

    /// See [`crate::driver::AnyDriver::lease_extend`].
    ///
    /// # Errors
    /// Transport failures and refused writes.
    pub async fn lease_extend(&self, record: &LeaseRecord) -> Result<(), DokkuError> {
        let app = self.lease_app();
        let write = self.build(config_set(&app, &record.fields()))?;
        self.must(&write, &app).await.map(|_| ())
    }

    /// See [`crate::driver::AnyDriver::lease_clear`].
    ///
    /// # Errors
    /// Transport failures and refused destroys.
    pub async fn lease_clear(&self) -> Result<(), DokkuError> {
        let app = self.lease_app();
        let mut destroy = self.build(command(&["--force", "apps:destroy", &app]))?;
        destroy.tolerate = Tolerate::Nothing;
        let out = self.run_read(&destroy).await?;
        if out.code == Some(0) || out.code == Some(20) {
            Ok(())
        } else {
            Err(self.failed(&destroy, &app, &out))
        }
    }

    /// See [`crate::driver::AnyDriver::applied_commit`].
    ///
    /// # Errors
    /// Transport failures and unreadable output.
    pub async fn applied_commit(&self) -> Result<Option<String>, DokkuError> {
        Ok(self
            .record_config(STATE_APP)
            .await?
            .and_then(|mut c| c.remove(&applied_key(&self.host().environment))))
    }

    /// Record now as the moment `tenant`'s cancellation was applied.
    ///
    /// # Errors
    /// Transport failures and refused writes.
    pub(super) async fn record_cancellation(&self, tenant: &str) -> Result<(), DokkuError> {
        self.write_record(
            &cancelled_key(&self.host().environment, tenant),
            &crate::clock::now_unix().to_string(),
        )
        .await
    }

    /// Forget `tenant`'s cancellation record.
    ///
    /// # Errors
    /// Transport failures and refused writes.
    pub(super) async fn clear_cancellation(&self, tenant: &str) -> Result<(), DokkuError> {
        let key = cancelled_key(&self.host().environment, tenant);
        let cmd = self.build(command(&["config:unset", "--no-restart", STATE_APP, &key]))?;
        let out = self.run_read(&cmd).await?;
        if out.code == Some(0) || out.code == Some(20) {
            Ok(())
        } else {
            Err(self.failed(&cmd, STATE_APP, &out))
        }
    }

    /// See [`crate::driver::AnyDriver::record_applied`].
    ///
    /// # Errors
    /// Transport failures and refused writes.
    pub async fn record_applied(&self, commit: &str) -> Result<(), DokkuError> {
        self.write_record(&applied_key(&self.host().environment), commit)
            .await
    }

    /// `domains:disable <app>` for one of berth's own apps (reference/dokku.md §4: deletes
    /// the VHOST file, sets `NO_VHOST=1`; no restart, and the app is never deployed).
    pub(super) async fn disable_vhost(&self, app: &str) -> Result<(), DokkuError> {
        let cmd = self.build(command(&["domains:disable", app]))?;
        self.must(&cmd, app).await?;
        self.forget_vhost(app);
        Ok(())
    }

    /// Make sure the record app exists, without a vhost: `apps:create` gives every new app
    /// Dokku's default vhost (reference/dokku.md §2, §4), so a record app berth creates has
    /// it disabled at once; one the last scan saw with a vhost (made by an older berth) has
    /// it disabled here too (that scan's `domains:report` costs nothing extra).
    pub(super) async fn ensure_state_app(&self) -> Result<(), DokkuError> {
        let mut create = self.build(command(&["apps:create", STATE_APP]))?;
        create.tolerate = Tolerate::AlreadyExists;
        let out = self.run_read(&create).await?;
        let exists = format!("{}{}", out.stdout, out.stderr).contains("Name is already taken");
        if out.code != Some(0) && !exists {
            return Err(self.failed(&create, STATE_APP, &out));
        }
        if out.code == Some(0) || self.vhost_seen(STATE_APP) {
            self.disable_vhost(STATE_APP).await?;
        }
        Ok(())
    }

    /// Set one key of the record app (creating the app when it is not there yet).
    async fn write_record(&self, key: &str, value: &str) -> Result<(), DokkuError> {
        self.ensure_state_app().await?;
        let write = self.build(config_set(
            STATE_APP,
            &BTreeMap::from([(key.to_string(), value.to_string())]),
        ))?;
        self.must(&write, STATE_APP).await.map(|_| ())
    }
}
