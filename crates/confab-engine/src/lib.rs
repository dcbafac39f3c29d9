//! The Confab call engine.

pub mod core;
