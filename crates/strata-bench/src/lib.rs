//! Load generation for `strata load-test` and friends: key distributions
//! ([`dist`]), workloads ([`workload`]), load shapes ([`stages`]), targets
//! ([`driver`]), schedulers ([`runner`]), recording ([`recorder`]) and reports
//! with gates ([`report`]); live Prometheus metrics of a run ([`live`]).

pub mod advice;
pub mod dist;
pub mod driver;
pub mod h1;
pub mod html;
pub mod live;
pub mod promtext;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod stages;
pub mod workload;
