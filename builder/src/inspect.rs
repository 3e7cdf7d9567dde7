//! `nodeimg inspect`: layers, sizes, files per layer, and where a file came from.
