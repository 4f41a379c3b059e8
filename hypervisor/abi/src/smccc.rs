//! SMCCC return codes used by Frameshift's calls (SMCCC v1.4, Arm DEN0028). The function
//! identifiers live with their families: [`crate::guest_call`] (guests) and [`crate::pd_call`]
//! (PDs). PSCI calls return PSCI's own codes (`guest_call::PSCI_*`), which differ from these from
//! -2 on.

/// SMCCC return code: success.
pub const SUCCESS: i64 = 0;
/// SMCCC return code: function not supported.
pub const NOT_SUPPORTED: i64 = -1;
/// SMCCC return code: not required.
pub const NOT_REQUIRED: i64 = -2;
/// SMCCC return code: invalid parameter.
pub const INVALID_PARAMETER: i64 = -3;
