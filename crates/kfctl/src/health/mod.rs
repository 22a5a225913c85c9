//! Readiness per kind, the Application status, Events.
