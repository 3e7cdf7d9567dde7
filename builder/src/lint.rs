//! Lint rules, as data: every build and `nodeimg check` run them.
