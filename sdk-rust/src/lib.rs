//! Placeholder: the Rust SDK is being written.
