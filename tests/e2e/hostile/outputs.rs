//! Hostile inputs: outputs.
