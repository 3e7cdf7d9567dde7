//! Hostile inputs: accounts.
