//! What a recipe may say, and its validation.
