//! `nodeimg schema`: the JSON Schema of the recipe format.
