//! Hostile inputs: sandbox.
