//! Hostile inputs: inputs.
