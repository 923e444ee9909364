//! HTTP API: axum routes, bearer-token auth and error mapping.
