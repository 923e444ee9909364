//! SQLite implementation of [`super::Store`].
