//! An honest fake of [`super::Storage`] on plain directories, for tests without root.
