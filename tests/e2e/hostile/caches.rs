//! Hostile inputs: caches.
