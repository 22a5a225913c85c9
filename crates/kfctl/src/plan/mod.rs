//! Ordering rendered objects into phases, webhook and CRD gates, the prune set.
