//! `${name}` expansion in recipe strings.
