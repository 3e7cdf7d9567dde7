//! Recipes: parsing, includes, variables, validation.
