//! Fetching, verifying and safely unpacking registry archives; the component catalog.
