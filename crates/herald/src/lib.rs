//! Herald server library (being written).
