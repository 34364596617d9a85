//! `reconcile_once` (observe → plan → execute) and the daemon loop around it.
//!
//! Not built yet (the apply and daemon issues).
