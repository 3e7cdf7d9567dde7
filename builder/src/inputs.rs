//! Files named by a recipe, read from the recipe's folder (never outside it).
