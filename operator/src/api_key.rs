//! api_key (in progress).
