//! AWS Signature Version 4 verification for the `@connections` management API (being
//! written: see issue 15).
