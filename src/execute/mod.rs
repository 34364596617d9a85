//! The executor: walks a plan's dependency graph and calls drivers. It makes no decisions.
//!
//! Not built yet (the apply issue). Everything it will need to know is in the plan.
