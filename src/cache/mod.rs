//! Caches, each in a module of its own with its reasoning written down (issue "The tenant
//! cache, health checks and metrics").

pub mod catalog;
