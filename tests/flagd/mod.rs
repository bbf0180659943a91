//! The flagd conformance facts, shared by the pure-evaluator and the server tests.
#![allow(dead_code)]

pub mod cases;
pub mod document;
