//! Hibernation evidence detector (placeholder until the detector lands).
