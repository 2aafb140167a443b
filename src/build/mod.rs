//! Building the root filesystem from a recipe: mmdebstrap, overlays, hygiene.
