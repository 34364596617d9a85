//! The bridge's one git writer: a thread that owns the bridge's bare clone, turns queued
//! events into commits and pushes them (a shell: git and network I/O).
//!
//! Every batch (whatever queued up while the previous batch was pushing): fetch the branch,
//! compute each event's edit on the fresh tip (in order, each on top of the previous one),
//! check that the edited repo still validates, make one commit per event, and push them all
//! at once. A push that loses a race (non-fast-forward, or the remote's ref moved under us)
//! is never forced: the batch is thrown away, the branch is fetched again, and every edit is
//! recomputed on the new tip — from the event, not by replaying a diff — then pushed again,
//! with jittered exponential backoff, a bounded number of times. Only then is each event
//! answered; a batch that could not be pushed leaves nothing behind (the local branch is
//! reset to the remote tip) and is answered with a failure, so Stripe delivers it again.
//!
//! Git history is the dedupe index: the `Stripe-Event:` trailers of every commit reachable
//! from the branch (and from review branches) are kept in a set, updated as the tip moves.
//!
//! Remotes: a local path (or `file://`) is pushed to by writing a pack into the remote's
//! object database and moving its ref with a compare-and-swap under git's own lock file,
//! exactly what `git receive-pack` does; libgit2's local transport overwrites the ref without
//! comparing, which would lose a commit pushed by someone else in between. `ssh://` and
//! `https://` remotes go through libgit2 (feature `bridge-remotes`), where the server does the
//! compare-and-swap and reports rejections per ref.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{
    ErrorCode, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository, Signature,
    build::TreeUpdateBuilder,
};
use tokio::sync::{mpsc, oneshot};

use super::decide::{self, ChangeKind, Decision, Snapshot, Stripe};
use super::event::{Event, Object, Subscription};
use super::message::{self, Origin};
use crate::gitops::GitRepo;
use crate::model::{Fleet, is_dns_label};
use crate::spec::source::{FileKind, SourceFile, SourceSet};

/// Where and how the writer pushes.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// Remote URL or path.
    pub remote: String,
    /// The branch the bridge commits to.
    pub branch: String,
    /// Directory for the bridge's own bare clone.
    pub state_dir: PathBuf,
    /// The environment whose `stripe:` block the bridge follows; `None` = the only one with one.
    pub environment: Option<String>,
    /// Changes of these kinds go to a review branch instead of `branch`.
    pub review: BTreeSet<ChangeKind>,
    /// Prefix of review branch names.
    pub review_prefix: String,
    /// Push options sent with every push (e.g. GitLab's `merge_request.create`).
    pub push_options: Vec<String>,
    /// Push attempts per batch.
    pub attempts: u32,
    /// First backoff; doubled per attempt, with jitter, capped at 250 ms.
    pub backoff: Duration,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Commit author name and email.
    pub author: (String, String),
    /// Credentials for ssh and https remotes.
    pub auth: Auth,
    /// Called between building a batch's commits and pushing them.
    pub before_push: PushHook,
}

/// A callback run after a batch's commits are built and right before they are pushed: the
/// worst moment for someone else to push. Tests use it to lose a race on purpose.
#[derive(Clone, Default)]
pub struct PushHook(pub Option<std::sync::Arc<dyn Fn() + Send + Sync>>);

impl std::fmt::Debug for PushHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PushHook(set)"
        } else {
            "PushHook(none)"
        })
    }
}

pub use crate::gitops::remote::Auth;

/// One event for the writer.
#[derive(Debug)]
pub struct Job {
    /// The verified event.
    pub event: Event,
    /// The subscription as re-fetched from the API, when re-fetching is on.
    pub refetched: Option<Subscription>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Outcome>,
}

/// How an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed and pushed.
    Committed {
        /// Tenant id.
        tenant: String,
        /// Commit id.
        commit: String,
        /// The branch it was pushed to.
        branch: String,
        /// What changed.
        summary: String,
    },
    /// Its id is already in history.
    Duplicate,
    /// Nothing to change.
    NoChange {
        /// The tenant, when resolved.
        tenant: Option<String>,
        /// Why.
        reason: String,
    },
    /// Refused: Stripe should retry once the cause is fixed.
    Refused {
        /// The tenant, when resolved.
        tenant: Option<String>,
        /// Why.
        reason: String,
    },
    /// The push kept failing (or git failed): nothing was written.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Git failures of the writer.
#[derive(Debug, thiserror::Error)]
pub enum BridgeGitError {
    /// A libgit2 call failed.
    #[error("git: {what}")]
    Git {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: git2::Error,
    },
    /// The remote refused the update because its ref moved (a lost race).
    #[error("the remote branch moved while pushing ({0})")]
    Moved(String),
    /// The remote rejected a ref for another reason (protected branch, hook).
    #[error("the remote rejected `{refname}`: {message}")]
    Rejected {
        /// The ref.
        refname: String,
        /// The remote's message.
        message: String,
    },
    /// The remote has no such branch.
    #[error("the remote has no branch `{0}`")]
    NoBranch(String),
    /// Reading the repo at the tip failed.
    #[error(transparent)]
    Read(#[from] crate::gitops::GitError),
    /// Setup problems (state directory, remote kind).
    #[error("{0}")]
    Setup(String),
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> BridgeGitError {
    let what = what.into();
    move |source| BridgeGitError::Git { what, source }
}

/// The writer's handle: queue jobs here.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
}

impl WriterHandle {
    /// Queue a job; `false` when the writer has stopped.
    pub async fn send(&self, job: Job) -> bool {
        self.tx.send(job).await.is_ok()
    }

    /// Whether the writer is still running.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// A writer that has fetched once and read the repo, not yet running.
pub struct Prepared {
    writer: Writer,
    /// The validated repo at the remote tip.
    pub fleet: Fleet,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// Open (or create) the bridge's bare clone, fetch the branch and index its history.
///
/// # Errors
/// When the state directory, the remote or the branch cannot be used, or the repo does not
/// validate at the tip.
pub fn prepare(settings: GitSettings) -> Result<Prepared, BridgeGitError> {
    let mut writer = Writer::open(settings)?;
    let tip = writer.fetch()?;
    // A crash may have left local refs ahead of the remote: start from the remote tip.
    writer.reset();
    writer.reindex(tip)?;
    let fleet = writer.fleet_at(tip)?.0;
    Ok(Prepared { writer, fleet })
}

impl Prepared {
    /// Fix the environment the writer serves.
    pub fn set_environment(&mut self, environment: String) {
        self.writer.settings.environment = Some(environment);
    }

    /// Start the writer thread. It ends when every handle is dropped, after its batch.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(self) -> Result<(WriterHandle, std::thread::JoinHandle<()>), BridgeGitError> {
        let (tx, rx) = mpsc::channel(4096);
        let writer = self.writer;
        let thread = std::thread::Builder::new()
            .name("berth-bridge-git".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| BridgeGitError::Setup(format!("cannot start the git writer: {e}")))?;
        Ok((WriterHandle { tx }, thread))
    }
}

enum RemoteKind {
    Local(PathBuf),
    Network,
}

fn remote_kind(url: &str) -> RemoteKind {
    if let Some(path) = url.strip_prefix("file://") {
        return RemoteKind::Local(PathBuf::from(path));
    }
    if url.contains("://") {
        return RemoteKind::Network;
    }
    // scp-like `git@host:org/repo.git`: a colon before any slash.
    if let Some(colon) = url.find(':')
        && !url[..colon].contains('/')
        && !Path::new(url).exists()
    {
        return RemoteKind::Network;
    }
    RemoteKind::Local(PathBuf::from(url))
}

struct Writer {
    settings: GitSettings,
    repo: Repository,
    path: PathBuf,
    /// Event ids in history.
    seen: HashSet<String>,
    /// Tips the index covers.
    indexed: Vec<Oid>,
    /// The template path the last computation read.
    template: Option<String>,
}

/// One computed write.
#[derive(Clone)]
struct Edit {
    job: usize,
    tenant: String,
    path: String,
    text: String,
    message: String,
    summary: String,
    review: Option<String>,
}

impl Writer {
    fn open(settings: GitSettings) -> Result<Self, BridgeGitError> {
        // libgit2 checks, for every tree it writes, that each entry's object exists: for the
        // `tenants/` tree of a big fleet that is hundreds of lookups per commit, and the bridge
        // builds its trees from trees it just read plus blobs it just wrote. (Process-wide;
        // the rest of berth creates no git objects.)
        git2::opts::strict_object_creation(false);
        std::fs::create_dir_all(&settings.state_dir).map_err(|e| {
            BridgeGitError::Setup(format!(
                "cannot create the state directory `{}`: {e}",
                settings.state_dir.display()
            ))
        })?;
        let path = settings.state_dir.join("repo.git");
        let repo = if path.exists() {
            Repository::open_bare(&path).map_err(git(format!("open {}", path.display())))?
        } else {
            Repository::init_bare(&path).map_err(git(format!("create {}", path.display())))?
        };
        match repo.find_remote("origin") {
            Ok(remote) if remote.url() == Some(settings.remote.as_str()) => {}
            Ok(_) => repo
                .remote_set_url("origin", &settings.remote)
                .map_err(git("set the remote URL"))?,
            Err(_) => {
                repo.remote("origin", &settings.remote)
                    .map_err(git("add the remote"))?;
            }
        }
        if let RemoteKind::Local(remote_path) = remote_kind(&settings.remote) {
            let remote = Repository::open(&remote_path).map_err(git(format!(
                "open the remote repository `{}`",
                remote_path.display()
            )))?;
            if !remote.is_bare() {
                return Err(BridgeGitError::Setup(format!(
                    "the remote `{}` is not a bare repository; the bridge pushes only to bare remotes",
                    remote_path.display()
                )));
            }
        }
        Ok(Writer {
            settings,
            repo,
            path,
            seen: HashSet::new(),
            indexed: Vec::new(),
            template: None,
        })
    }

    fn main_ref(&self) -> String {
        format!("refs/heads/{}", self.settings.branch)
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.settings.branch)
    }

    fn callbacks(&self) -> RemoteCallbacks<'static> {
        crate::gitops::remote::callbacks(&self.settings.auth)
    }

    /// Fetch the branch (and review branches); returns the remote tip.
    fn fetch(&mut self) -> Result<Oid, BridgeGitError> {
        let mut refspecs = vec![format!(
            "+refs/heads/{b}:refs/remotes/origin/{b}",
            b = self.settings.branch
        )];
        if !self.settings.review.is_empty() {
            refspecs.push(format!(
                "+refs/heads/{p}*:refs/remotes/origin/{p}*",
                p = self.settings.review_prefix
            ));
        }
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(git("find the remote"))?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks());
        options.prune(git2::FetchPrune::On);
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|e| network_error("fetch", &e))?;
        let tip = self
            .repo
            .refname_to_id(&self.tracking_ref())
            .map_err(|_| BridgeGitError::NoBranch(self.settings.branch.clone()))?;
        Ok(tip)
    }

    fn review_tips(&self) -> Vec<Oid> {
        let glob = format!("refs/remotes/origin/{}*", self.settings.review_prefix);
        let Ok(refs) = self.repo.references_glob(&glob) else {
            return Vec::new();
        };
        refs.flatten().filter_map(|r| r.target()).collect()
    }

    /// Bring the event index up to date with the remote tip (and review branches).
    fn reindex(&mut self, tip: Oid) -> Result<(), BridgeGitError> {
        let mut tips = vec![tip];
        tips.extend(self.review_tips());
        let fast_forward = self.indexed.first().is_none_or(|old| {
            *old == tip || self.repo.graph_descendant_of(tip, *old).unwrap_or(false)
        });
        if !fast_forward {
            // History was rewritten: start over so dropped commits no longer count.
            self.seen.clear();
            self.indexed.clear();
        }
        let mut walk = self.repo.revwalk().map_err(git("walk history"))?;
        for t in &tips {
            walk.push(*t).map_err(git("walk history"))?;
        }
        for old in &self.indexed {
            let _ = walk.hide(*old);
        }
        for oid in walk {
            let oid = oid.map_err(git("walk history"))?;
            let commit = self.repo.find_commit(oid).map_err(git("read a commit"))?;
            let text = String::from_utf8_lossy(commit.message_bytes());
            if text.contains(message::EVENT_TRAILER) {
                self.seen
                    .extend(message::event_ids(&text).map(str::to_string));
            }
        }
        self.indexed = tips;
        Ok(())
    }

    /// The validated fleet at a commit, and its sources.
    fn fleet_at(&self, tip: Oid) -> Result<(Fleet, SourceSet), BridgeGitError> {
        let sources = GitRepo::open(&self.path)?.sources_at(&tip.to_string())?;
        let (fleet, diags) = crate::validate::validate(&sources);
        match fleet {
            Some(fleet) => Ok((fleet, sources)),
            None => Err(BridgeGitError::Setup(format!(
                "the repo does not validate at {}: {}",
                short(tip),
                first_error(&diags)
            ))),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.batch(batch);
        }
    }

    /// Fetch, compute, commit, push and answer, in order. On a quiet branch the whole batch
    /// goes in one push. After a lost race the next attempt pushes a shorter prefix of it
    /// (halved each time), so on a busy branch the window between fetch and push shrinks
    /// until a push wins; every prefix is answered as soon as it landed, and the size grows
    /// again after a win. `attempts` lost races in a row end the batch with 503s.
    fn batch(&mut self, mut jobs: Vec<Job>) {
        let attempts = self.settings.attempts.max(1);
        let mut limit = jobs.len();
        let mut failures = 0;
        let mut cache: Option<Computed> = None;
        let mut last_error = String::new();
        while !jobs.is_empty() {
            let n = limit.min(jobs.len());
            if failures > 0 {
                std::thread::sleep(backoff(self.settings.backoff, failures));
            }
            match self.attempt(&jobs[..n], &mut cache) {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.drain(..n).zip(outcomes) {
                        let _ = job.reply.send(outcome);
                    }
                    cache = None;
                    failures = 0;
                    limit = n.saturating_mul(2);
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(attempt = failures, attempts, events = n, error = %error, "push failed; fetching and recomputing");
                    last_error = error.to_string();
                    self.reset();
                    if failures >= attempts {
                        break;
                    }
                    limit = (n / 2).max(1);
                    // Decisions are made in order, each on top of the ones before it, so the
                    // decisions for a prefix are the first ones of the whole; and the bridge's
                    // edits only add to what validation checks (a new file, a changed tier or
                    // state), so a prefix of edits that validated together validates too.
                    if let Some(c) = &mut cache {
                        c.outcomes.truncate(limit);
                        c.edits.retain(|e| e.job < limit);
                    }
                }
            }
        }
        if jobs.is_empty() {
            return;
        }
        tracing::error!(events = jobs.len(), error = %last_error, "giving up on these events; Stripe will deliver them again");
        self.reset();
        // Events that needed no write are still answered; the writes failed.
        let outcomes = match self.compute_only(&jobs) {
            Ok(mut outcomes) => {
                for o in &mut outcomes {
                    if matches!(o, Outcome::Committed { .. }) {
                        *o = Outcome::Failed {
                            reason: last_error.clone(),
                        };
                    }
                }
                outcomes
            }
            Err(_) => jobs
                .iter()
                .map(|_| Outcome::Failed {
                    reason: last_error.clone(),
                })
                .collect(),
        };
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }

    /// Answers without pushing (after giving up): writes become `Committed` placeholders.
    fn compute_only(&mut self, jobs: &[Job]) -> Result<Vec<Outcome>, BridgeGitError> {
        let tip = self
            .repo
            .refname_to_id(&self.tracking_ref())
            .map_err(git("read the remote tip"))?;
        let (outcomes, edits) = self.compute(jobs, tip)?;
        let mut outcomes: Vec<Option<Outcome>> = outcomes;
        for e in edits {
            outcomes[e.job] = Some(Outcome::Committed {
                tenant: e.tenant,
                commit: String::new(),
                branch: String::new(),
                summary: e.summary,
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Failed {
                    reason: "not computed".into(),
                })
            })
            .collect())
    }

    /// Put the local branch back on the remote tip and drop local review refs.
    fn reset(&mut self) {
        if let Ok(tip) = self.repo.refname_to_id(&self.tracking_ref()) {
            let _ = self
                .repo
                .reference(&self.main_ref(), tip, true, "bridge: reset to remote");
        }
        let glob = format!("refs/heads/{}*", self.settings.review_prefix);
        if let Ok(refs) = self.repo.references_glob(&glob) {
            for mut r in refs.flatten() {
                let _ = r.delete();
            }
        }
    }

    /// The inputs a batch's decisions depend on at a commit: the `environments/` and
    /// `tenants/` trees and the template. Git ids are content hashes, so equal ids mean equal
    /// inputs.
    fn inputs(&self, tip: Oid, template: Option<&str>) -> Inputs {
        let Ok(tree) = self.repo.find_commit(tip).and_then(|c| c.tree()) else {
            return Inputs::default();
        };
        let id = |path: &str| tree.get_path(Path::new(path)).ok().map(|e| e.id());
        Inputs {
            environments: id("environments"),
            tenants: id("tenants"),
            template: template.and_then(id),
        }
    }

    fn attempt(
        &mut self,
        jobs: &[Job],
        cache: &mut Option<Computed>,
    ) -> Result<Vec<Outcome>, BridgeGitError> {
        let t0 = std::time::Instant::now();
        let tip = self.fetch()?;
        let t_fetch = t0.elapsed();
        self.reindex(tip)?;
        // After a lost race: when the commits that won touched none of the inputs (a person
        // edited a README, another tool wrote elsewhere), every decision is still the same,
        // so only the commits are rebuilt on the new tip. That keeps the window between
        // fetch and push small enough to win against a busy branch.
        let reusable = cache.as_ref().is_some_and(|c| {
            c.inputs == self.inputs(tip, c.template.as_deref())
                && !jobs.iter().any(|j| self.seen.contains(&j.event.id))
        });
        let (mut outcomes, edits) = match cache.as_ref().filter(|_| reusable) {
            Some(c) => (c.outcomes.clone(), c.edits.clone()),
            None => {
                let started = std::time::Instant::now();
                let (outcomes, edits) = self.compute(jobs, tip)?;
                tracing::debug!(events = jobs.len(), took = ?started.elapsed(), "decided");
                let template = self.template.clone();
                *cache = Some(Computed {
                    inputs: self.inputs(tip, template.as_deref()),
                    template,
                    outcomes: outcomes.clone(),
                    edits: edits.clone(),
                });
                (outcomes, edits)
            }
        };
        if edits.is_empty() {
            return Ok(outcomes
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect());
        }
        // Commits: the main chain in order; each review commit on the chain as it stood. New
        // objects go to an in-memory pack first (a fresh handle with a mempack backend), so a
        // batch of hundreds of commits costs no file per object, and a push that loses its
        // race leaves nothing on disk; they are written out as one pack once the push landed.
        let repo = Repository::open_bare(&self.path).map_err(git("open the bridge's clone"))?;
        let odb = repo.odb().map_err(git("open the object database"))?;
        let mempack = odb
            .add_new_mempack_backend(1000)
            .map_err(git("set up an in-memory object store"))?;
        let author = Signature::now(&self.settings.author.0, &self.settings.author.1)
            .map_err(git("make a signature"))?;
        let mut head = tip;
        let mut updates: Vec<RefUpdate> = Vec::new();
        let mut committed: Vec<(usize, Oid, String)> = Vec::new();
        for edit in &edits {
            let parent = repo.find_commit(head).map_err(git("read the tip"))?;
            let tree = parent.tree().map_err(git("read a tree"))?;
            let blob = repo
                .blob(edit.text.as_bytes())
                .map_err(git("write a blob"))?;
            let mut update = TreeUpdateBuilder::new();
            // The path is `tenants/<dns-label>.yaml` or `.yml`: checked in `compute`.
            update.upsert(&edit.path, blob, git2::FileMode::Blob);
            let tree_id = update
                .create_updated(&repo, &tree)
                .map_err(git("build a tree"))?;
            let tree = repo.find_tree(tree_id).map_err(git("read a tree"))?;
            let oid = repo
                .commit(None, &author, &author, &edit.message, &tree, &[&parent])
                .map_err(git("commit"))?;
            match &edit.review {
                None => {
                    head = oid;
                    committed.push((edit.job, oid, self.settings.branch.clone()));
                }
                Some(branch) => {
                    let name = format!("refs/heads/{branch}");
                    updates.push(RefUpdate {
                        name: name.clone(),
                        new: oid,
                        old: repo
                            .refname_to_id(&format!("refs/remotes/origin/{branch}"))
                            .ok(),
                    });
                    committed.push((edit.job, oid, branch.clone()));
                }
            }
        }
        if head != tip {
            updates.insert(
                0,
                RefUpdate {
                    name: self.main_ref(),
                    new: head,
                    old: Some(tip),
                },
            );
        }
        let t_commits = t0.elapsed();
        if let Some(hook) = &self.settings.before_push.0 {
            hook();
        }
        let pushed = self.push(&repo, &updates);
        tracing::debug!(fetch = ?t_fetch, commits = ?t_commits, pushed = ?t0.elapsed(), reused = reusable, "push attempt");
        pushed?;
        // Keep the pushed objects: one pack into the clone's own object database.
        let mut pack = git2::Buf::new();
        mempack
            .dump(&repo, &mut pack)
            .map_err(git("write the pushed objects"))?;
        {
            let disk = self.repo.odb().map_err(git("open the object database"))?;
            let mut writer = disk.packwriter().map_err(git("write a pack"))?;
            writer
                .write_all(&pack)
                .map_err(|e| BridgeGitError::Setup(format!("cannot write a pack: {e}")))?;
            writer.commit().map_err(git("index a pack"))?;
        }
        // Landed: record the new remote state and the events now in history.
        for u in &updates {
            let _ = self.repo.reference(&u.name, u.new, true, "bridge: pushed");
            let tracking = u.name.replacen("refs/heads/", "refs/remotes/origin/", 1);
            let _ = self
                .repo
                .reference(&tracking, u.new, true, "bridge: pushed");
        }
        for e in &edits {
            self.seen.insert(jobs[e.job].event.id.clone());
        }
        tracing::info!(
            events = jobs.len(),
            commits = edits.len(),
            refs = updates.len(),
            "batch pushed"
        );
        self.indexed = updates.iter().map(|u| u.new).collect();
        if head == tip {
            self.indexed.insert(0, tip);
        }
        for (edit, (job, oid, branch)) in edits.iter().zip(committed) {
            tracing::info!(event = %jobs[job].event.id, tenant = %edit.tenant, commit = %short(oid), branch = %branch, change = %edit.summary, "pushed");
            outcomes[job] = Some(Outcome::Committed {
                tenant: edit.tenant.clone(),
                commit: oid.to_string(),
                branch,
                summary: edit.summary.clone(),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    /// Decide every job on the tip; returns the answers that need no push and the edits.
    #[allow(clippy::type_complexity)]
    fn compute(
        &mut self,
        jobs: &[Job],
        tip: Oid,
    ) -> Result<(Vec<Option<Outcome>>, Vec<Edit>), BridgeGitError> {
        let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
        let started = std::time::Instant::now();
        let base = self.fleet_at(tip);
        tracing::debug!(took = ?started.elapsed(), "read and validated the tip");
        let (fleet, sources) = match base {
            Ok(x) => x,
            Err(BridgeGitError::Setup(reason)) => {
                // The repo is invalid before any edit: nothing can be checked, so nothing is
                // written until people fix it.
                for (i, job) in jobs.iter().enumerate() {
                    outcomes[i] = Some(if self.seen.contains(&job.event.id) {
                        Outcome::Duplicate
                    } else {
                        Outcome::Refused {
                            tenant: None,
                            reason: reason.clone(),
                        }
                    });
                }
                return Ok((outcomes, Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let environment = match self.environment(&fleet) {
            Ok(env) => env,
            Err(reason) => {
                for o in &mut outcomes {
                    *o = Some(Outcome::Refused {
                        tenant: None,
                        reason: reason.clone(),
                    });
                }
                return Ok((outcomes, Vec::new()));
            }
        };
        let env = &fleet.environments[&environment];
        self.template.clone_from(&env.stripe_new_tenant);
        let template = match &env.stripe_new_tenant {
            Some(path) => self.read_at(tip, path),
            None => None,
        };
        let stripe = Stripe {
            environment: &environment,
            prices: &env.stripe_prices,
            template: template.as_deref(),
        };
        let mut overlay: BTreeMap<String, String> = BTreeMap::new();
        let mut in_batch: HashSet<&str> = HashSet::new();
        let mut edits = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let event = &job.event;
            if self.seen.contains(&event.id) || in_batch.contains(event.id.as_str()) {
                outcomes[i] = Some(Outcome::Duplicate);
                continue;
            }
            let outcome = self.decide_one(i, job, &fleet, stripe, tip, &overlay);
            match outcome {
                Ok(edit) => {
                    in_batch.insert(&event.id);
                    if edit.review.is_none() {
                        overlay.insert(edit.path.clone(), edit.text.clone());
                    }
                    edits.push(edit);
                }
                Err(o) => outcomes[i] = Some(o),
            }
        }
        tracing::debug!(took = ?started.elapsed(), "decided every event");
        let edits = self.check(edits, &sources, &mut outcomes);
        tracing::debug!(took = ?started.elapsed(), "validated the edits");
        Ok((outcomes, edits))
    }

    fn environment(&self, fleet: &Fleet) -> Result<String, String> {
        bridge_environment(fleet, self.settings.environment.as_deref())
    }

    fn read_at(&self, tip: Oid, path: &str) -> Option<String> {
        let commit = self.repo.find_commit(tip).ok()?;
        let entry = commit.tree().ok()?.get_path(Path::new(path)).ok()?;
        let blob = self.repo.find_blob(entry.id()).ok()?;
        String::from_utf8(blob.content().to_vec()).ok()
    }

    fn tenant_file(
        &self,
        tip: Oid,
        id: &str,
        overlay: &BTreeMap<String, String>,
    ) -> (String, Option<String>) {
        for ext in ["yaml", "yml"] {
            let path = format!("tenants/{id}.{ext}");
            if let Some(text) = overlay.get(&path) {
                return (path, Some(text.clone()));
            }
            if let Some(text) = self.read_at(tip, &path) {
                return (path, Some(text));
            }
        }
        (format!("tenants/{id}.yaml"), None)
    }

    fn decide_one(
        &self,
        index: usize,
        job: &Job,
        fleet: &Fleet,
        stripe: Stripe<'_>,
        tip: Oid,
        overlay: &BTreeMap<String, String>,
    ) -> Result<Edit, Outcome> {
        let event = &job.event;
        let refused = |tenant: Option<&str>, reason: String| Outcome::Refused {
            tenant: tenant.map(str::to_string),
            reason,
        };
        let no_change = |tenant: Option<&str>, reason: String| Outcome::NoChange {
            tenant: tenant.map(str::to_string),
            reason,
        };
        let snapshot = match (&job.refetched, &event.object) {
            (Some(sub), _) => Snapshot::Subscription {
                subscription: sub,
                authoritative: true,
            },
            (None, Object::Subscription(sub)) => Snapshot::Subscription {
                subscription: sub,
                authoritative: false,
            },
            (None, Object::Checkout(c)) => Snapshot::Checkout(c),
            (None, Object::Invoice(_)) => {
                return Err(no_change(
                    None,
                    "invoice events carry no subscription status; they act only with --refetch"
                        .into(),
                ));
            }
            (None, Object::Ignored) => {
                return Err(no_change(None, "event type not handled".into()));
            }
        };
        let tenant =
            resolve_tenant(event, job.refetched.as_ref(), fleet).map_err(|r| refused(None, r))?;
        let (path, file) = self.tenant_file(tip, &tenant, overlay);
        if !path.starts_with("tenants/") || !is_dns_label(&tenant) {
            return Err(refused(Some(&tenant), "not a tenant path".into()));
        }
        match decide::decide(&tenant, file.as_deref(), stripe, event.created, snapshot) {
            Decision::NoChange(reason) => Err(no_change(Some(&tenant), reason.to_string())),
            Decision::Refuse(reason) => Err(refused(Some(&tenant), reason.to_string())),
            Decision::Write { text, change } => {
                let kind = change.kind();
                let review = self.settings.review.contains(&kind).then(|| {
                    format!(
                        "{}{tenant}-{}-{}",
                        self.settings.review_prefix,
                        kind_str(kind),
                        event.id
                    )
                });
                let origin = Origin {
                    event_id: &event.id,
                    event_type: &event.event_type,
                    subscription: event
                        .subscription_id()
                        .or(job.refetched.as_ref().map(|s| s.id.as_str())),
                    refetched: job.refetched.is_some(),
                };
                Ok(Edit {
                    job: index,
                    summary: message::summary(&change),
                    message: message::message(&tenant, &change, origin),
                    tenant,
                    path,
                    text,
                    review,
                })
            }
        }
    }

    /// Keep the edits under which the repo still validates; refuse the others.
    fn check(
        &self,
        edits: Vec<Edit>,
        base: &SourceSet,
        outcomes: &mut [Option<Outcome>],
    ) -> Vec<Edit> {
        let with = |set: &SourceSet, edits: &[&Edit]| {
            let mut set = set.clone();
            for e in edits {
                overlay_file(&mut set, &e.path, &e.text);
            }
            set
        };
        let main: Vec<&Edit> = edits.iter().filter(|e| e.review.is_none()).collect();
        let all_main_ok = crate::validate::validate(&with(base, &main)).0.is_some();
        let mut kept_main: Vec<&Edit> = Vec::new();
        let mut keep = vec![false; edits.len()];
        for (i, e) in edits.iter().enumerate() {
            if e.review.is_some() {
                continue;
            }
            if all_main_ok {
                keep[i] = true;
                continue;
            }
            // Isolate the offenders: add one edit at a time.
            let mut trial = kept_main.clone();
            trial.push(e);
            let (fleet, diags) = crate::validate::validate(&with(base, &trial));
            if fleet.is_some() {
                kept_main.push(e);
                keep[i] = true;
            } else {
                outcomes[e.job] = Some(invalid(e, &diags));
            }
        }
        let main_set = {
            let kept: Vec<&Edit> = edits
                .iter()
                .enumerate()
                .filter(|(i, e)| keep[*i] && e.review.is_none())
                .map(|(_, e)| e)
                .collect();
            with(base, &kept)
        };
        for (i, e) in edits.iter().enumerate() {
            if e.review.is_none() {
                continue;
            }
            let (fleet, diags) = crate::validate::validate(&with(&main_set, &[e]));
            if fleet.is_some() {
                keep[i] = true;
            } else {
                outcomes[e.job] = Some(invalid(e, &diags));
            }
        }
        edits
            .into_iter()
            .zip(keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect()
    }

    fn push(&self, repo: &Repository, updates: &[RefUpdate]) -> Result<(), BridgeGitError> {
        match remote_kind(&self.settings.remote) {
            RemoteKind::Local(path) => push_local(repo, &path, updates),
            RemoteKind::Network => {
                // libgit2 pushes local refs: point them at the new commits (reset on failure).
                for u in updates {
                    repo.reference(&u.name, u.new, true, "bridge: commit")
                        .map_err(git("move a local ref"))?;
                }
                let rejected = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let mut callbacks = self.callbacks();
                let sink = rejected.clone();
                callbacks.push_update_reference(move |refname, status| {
                    if let Some(message) = status {
                        sink.borrow_mut()
                            .push((refname.to_string(), message.to_string()));
                    }
                    Ok(())
                });
                let mut options = PushOptions::new();
                options.remote_callbacks(callbacks);
                let push_options: Vec<&str> = self
                    .settings
                    .push_options
                    .iter()
                    .map(String::as_str)
                    .collect();
                if !push_options.is_empty() {
                    options.remote_push_options(&push_options);
                }
                let refspecs: Vec<String> = updates
                    .iter()
                    .map(|u| format!("{n}:{n}", n = u.name))
                    .collect();
                let mut remote = repo.find_remote("origin").map_err(git("find the remote"))?;
                remote
                    .push(&refspecs, Some(&mut options))
                    .map_err(|e| network_error("push", &e))?;
                if let Some((refname, message)) = rejected.borrow().first().cloned() {
                    return Err(BridgeGitError::Rejected { refname, message });
                }
                Ok(())
            }
        }
    }
}

fn invalid(e: &Edit, diags: &[crate::validate::Diagnostic]) -> Outcome {
    Outcome::Refused {
        tenant: Some(e.tenant.clone()),
        reason: format!(
            "the edited repo does not pass `berth validate`: {}",
            first_error(diags)
        ),
    }
}

fn first_error(diags: &[crate::validate::Diagnostic]) -> String {
    diags
        .iter()
        .find(|d| d.severity == crate::validate::Severity::Error)
        .map_or_else(
            || "invalid".to_string(),
            |d| format!("{}: {}", d.location.file, d.message),
        )
}

fn overlay_file(set: &mut SourceSet, path: &str, text: &str) {
    if let Some(file) = set.files.iter_mut().find(|f| f.path == path) {
        file.text = Ok(text.to_string());
    } else {
        set.files.push(SourceFile {
            path: path.to_string(),
            kind: FileKind::Tenant,
            text: Ok(text.to_string()),
        });
        set.files
            .sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    }
}

/// Which tenant an event is for: the id it names (checked), else the tenant whose file records
/// its subscription, else the only tenant that records its customer.
fn resolve_tenant(
    event: &Event,
    refetched: Option<&Subscription>,
    fleet: &Fleet,
) -> Result<String, String> {
    let named = event
        .tenant_id()
        .or(refetched.and_then(|s| s.tenant_id.as_deref()));
    if let Some(raw) = named {
        return if is_dns_label(raw) {
            Ok(raw.to_string())
        } else {
            Err(invalid_tenant_id(raw))
        };
    }
    let by = |f: &dyn Fn(&crate::spec::BillingSpec) -> bool| -> Vec<&String> {
        fleet
            .tenants
            .iter()
            .filter(|(_, t)| t.billing.as_ref().is_some_and(f))
            .map(|(id, _)| id)
            .collect()
    };
    if let Some(sub) = event.subscription_id().or(refetched.map(|s| s.id.as_str()))
        && let [one] = by(&|b| b.subscription.as_deref() == Some(sub)).as_slice()
    {
        return Ok((*one).clone());
    }
    if let Some(customer) = event.customer()
        && let [one] = by(&|b| b.customer.as_deref() == Some(customer)).as_slice()
    {
        return Ok((*one).clone());
    }
    Err("the event names no tenant (set `metadata.tenant_id` on the subscription, or `client_reference_id` on the checkout session) and no tenant file records its subscription or customer".into())
}

/// The environment the bridge serves: the one named, else the only one with a `stripe:` block.
///
/// # Errors
/// A named environment that does not exist; none or several with a `stripe:` block.
pub fn bridge_environment(fleet: &Fleet, named: Option<&str>) -> Result<String, String> {
    if let Some(name) = named {
        return if fleet.environments.contains_key(name) {
            Ok(name.to_string())
        } else {
            Err(format!("the repo has no environment `{name}`"))
        };
    }
    let with_stripe: Vec<&String> = fleet
        .environments
        .iter()
        .filter(|(_, e)| !e.stripe_prices.is_empty() || e.stripe_new_tenant.is_some())
        .map(|(n, _)| n)
        .collect();
    match with_stripe.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err("no environment has a `stripe:` block".into()),
        _ => Err("several environments have a `stripe:` block: pass --environment".into()),
    }
}

/// The refusal message for a tenant id that is not a DNS label (escaped, shortened).
#[must_use]
pub fn invalid_tenant_id(raw: &str) -> String {
    let shown: String = raw.chars().flat_map(char::escape_debug).take(80).collect();
    format!("tenant id `{shown}` is not a valid tenant id (a DNS label: 1-63 of a-z, 0-9, `-`)")
}

fn kind_str(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::NewTenant => "new",
        ChangeKind::Cancel => "cancel",
        ChangeKind::Suspend => "suspend",
        ChangeKind::Reactivate => "reactivate",
        ChangeKind::Tier => "tier",
        ChangeKind::Billing => "billing",
    }
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome::Failed {
            reason: "no answer computed".into(),
        }
    }
}

/// What a batch's decisions depend on (see [`Writer::inputs`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Inputs {
    environments: Option<Oid>,
    tenants: Option<Oid>,
    template: Option<Oid>,
}

/// A batch's decisions, kept across push attempts.
struct Computed {
    inputs: Inputs,
    template: Option<String>,
    outcomes: Vec<Option<Outcome>>,
    edits: Vec<Edit>,
}

/// One ref to move on the remote: from `old` (`None` = must not exist) to `new`.
struct RefUpdate {
    name: String,
    new: Oid,
    old: Option<Oid>,
}

/// Push to a bare repository on this machine: copy the missing objects as a pack, then move
/// each ref with a compare-and-swap (git's `.lock` file protocol, as `git receive-pack` does).
fn push_local(repo: &Repository, path: &Path, updates: &[RefUpdate]) -> Result<(), BridgeGitError> {
    let remote = Repository::open_bare(path).map_err(git(format!("open `{}`", path.display())))?;
    let mut walk = repo.revwalk().map_err(git("walk new commits"))?;
    for u in updates {
        walk.push(u.new).map_err(git("walk new commits"))?;
        if let Some(old) = u.old {
            let _ = walk.hide(old);
        }
    }
    let mut builder = repo.packbuilder().map_err(git("pack objects"))?;
    builder
        .insert_walk(&mut walk)
        .map_err(git("pack objects"))?;
    if builder.object_count() > 0 {
        let odb = remote.odb().map_err(git("open the remote's objects"))?;
        let mut writer = odb.packwriter().map_err(git("write a pack"))?;
        let mut failed = None;
        builder
            .foreach(|chunk| match writer.write_all(chunk) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })
            .map_err(git("write a pack"))?;
        if let Some(e) = failed {
            return Err(BridgeGitError::Setup(format!("cannot write a pack: {e}")));
        }
        writer.commit().map_err(git("index a pack"))?;
    }
    for u in updates {
        let result = match u.old {
            Some(old) => remote
                .reference_matching(&u.name, u.new, true, old, "berth bridge")
                .map(|_| ()),
            None => remote
                .reference(&u.name, u.new, false, "berth bridge")
                .map(|_| ()),
        };
        if let Err(e) = result {
            return Err(match e.code() {
                ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked => {
                    BridgeGitError::Moved(format!("{}: {}", u.name, e.message()))
                }
                _ => BridgeGitError::Git {
                    what: format!("update `{}`", u.name),
                    source: e,
                },
            });
        }
    }
    Ok(())
}

fn network_error(what: &str, e: &git2::Error) -> BridgeGitError {
    if e.code() == ErrorCode::NotFastForward {
        return BridgeGitError::Moved(e.message().to_string());
    }
    let mut message = e.message().to_string();
    if e.class() == git2::ErrorClass::Ssh && message.contains("hostkey") {
        message.push_str(" (the server's host key is not the one pinned with --ssh-host-key)");
    }
    if message.contains("unsupported URL protocol") && !cfg!(feature = "bridge-remotes") {
        message.push_str(" (this berth was built without the `bridge-remotes` feature)");
    }
    BridgeGitError::Git {
        what: what.to_string(),
        source: git2::Error::new(e.code(), e.class(), message),
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    use rand::Rng as _;
    let exp = base
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(2));
    let jitter = rand::rng().random_range(0.5..1.0);
    exp.mul_f64(jitter)
}

fn short(oid: Oid) -> String {
    oid.to_string()[..10].to_string()
}
