//! The local runtime: one OCI bundle per box, run by runc.
