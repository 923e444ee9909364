//! An honest fake of [`super::Runtime`] that records the state machine, for tests without root.
