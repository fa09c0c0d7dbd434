//! How labctl names what it creates, below every other module (`plan`,
//! `render` and the runtimes all use it): the instance a set of labs
//! belongs to ([`instance`], `LABCTL_INSTANCE`) and the labels on every
//! Docker object ([`labels`], the only place their keys are spelled).

pub mod instance;
pub mod labels;
