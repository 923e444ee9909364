//! Runnable programs that use `zomg-sdk`; see `src/bin/`.
