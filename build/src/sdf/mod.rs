//! Microkit 2.3 System Description File support: parsing, validation, and the parsed model.

pub mod model;
