//! The serving plan (DESIGN §3.1): which server countries answer the clients of each
//! country, so that every volunteer's load per Mbps stays near the pool-wide fair share.
//! Its inputs are capacity (from the feed) and [`demand`] (pool-name queries per client
//! country: a file measured by the fleet, or a prior from the GeoIP database). Everything
//! here runs when a table is built, never per query.

pub mod demand;
