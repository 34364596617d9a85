//! Reading desired state from git commits and writing the Stripe bridge's commits.
//!
//! Not built yet (the GitOps issue). Today the repo is read from the work tree by `repo`.
