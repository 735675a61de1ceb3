//! The client API (HTTP/JSON) request and response types.
