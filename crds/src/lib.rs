//! Portico custom resources and compile.
