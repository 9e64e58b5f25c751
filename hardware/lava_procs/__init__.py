"""Custom Lava ProcessModels (kept in their own package: Lava's compiler imports every
sibling module of a package that defines a Process or ProcessModel)."""
