//! Snapshot pool metadata core (placeholder until the core lands).
