//! The rules of zomg: box lifecycle, naming, conflicts, delete status.
