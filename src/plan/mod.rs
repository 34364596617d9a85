//! The planner: `plan(&desired, &live) -> Plan`, pure and deterministic.
