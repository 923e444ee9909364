//! Filesystem helpers that never let a user path escape its root.
