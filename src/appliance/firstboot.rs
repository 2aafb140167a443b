//! src placeholder
