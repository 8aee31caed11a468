//! Storage: cache keys, blob store, registry client.
