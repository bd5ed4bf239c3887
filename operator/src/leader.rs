//! leader (in progress).
