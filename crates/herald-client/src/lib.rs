//! Herald client (being written).
