//! Key path to line: where in a recipe file a value was written.
