//! Apache Velocity (VTL) for API Gateway mapping templates.
