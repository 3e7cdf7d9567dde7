//! The hostile-input suite: inputs an attacker controls (bases, packages,
//! caches, registries, recipe folders), generated here, each with the
//! result nodeimg must give. One module per trust boundary.
//!
//! Every case builds its own corpus in a temp dir and asserts on what the
//! build did (exit code, message, the image's bytes, files on the host), so
//! that each can fail; most keep a clean twin as negative control.

mod accounts;
mod caches;
mod flatten;
mod inputs;
mod outputs;
mod resources;
mod sandbox;
