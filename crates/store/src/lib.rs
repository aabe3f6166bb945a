//! Counter stores (placeholder, being written).
