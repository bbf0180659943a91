//! Shared integration-test harness.
#![allow(dead_code)] // each test binary uses a different part of it

pub mod app;
pub mod dynamo;
pub mod kinesis;
pub mod moto;
pub mod proxy;
pub mod runtime_api;
pub mod server;
