//! Server-side apply of a plan, retries with backoff, the inventory.
