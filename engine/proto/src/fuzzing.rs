//! Fuzzing entry points (to be written)
